//! Assembling a report: which rules a source has in the period, their figures and verdicts,
//! the summary table.

use super::canary::{blind_matters, canary_figures, days_of};
use super::events::{event_figures, exposure, incident_span, redrive_summary, Window};
use super::model::*;
use super::ports::{AuditDay, ReportReader};
use crate::canary::rollup::{histogram_error, DailyRollup, TARGET_MS};
use crate::canary::setup::CanarySegment;
use crate::incident::{Incident, IncidentCause};
use crate::ledger::{LedgerError, ObjectRecord};
use crate::redrive::RedriveRecord;
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use std::collections::BTreeMap;

impl Period {
    /// A calendar month, UTC.
    pub fn month(year: i32, month: u32) -> Option<Period> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let next = first.checked_add_months(Months::new(1))?;
        Some(Period {
            from: midnight(first),
            to: midnight(next),
            label: first.format("%Y-%m").to_string(),
        })
    }

    /// The month before the one `now` is in: what a scheduled monthly run reports.
    pub fn last_month(now: DateTime<Utc>) -> Option<Period> {
        let this = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)?;
        let last = this.checked_sub_months(Months::new(1))?;
        Period::month(last.year(), last.month())
    }

    /// Whole days `from..=to`, UTC.
    pub fn days(from: NaiveDate, to: NaiveDate) -> Option<Period> {
        let end = to.succ_opt()?;
        (from <= to).then(|| Period {
            from: midnight(from),
            to: midnight(end),
            label: format!("{from} to {to}"),
        })
    }

    pub fn first_day(&self) -> NaiveDate {
        self.from.date_naive()
    }

    /// The period's last day (its end is the midnight after it).
    pub fn last_day(&self) -> NaiveDate {
        (self.to - chrono::Duration::milliseconds(1)).date_naive()
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The ledger's default retention of object records and incidents (`REPLMON_LEDGER_TTL_DAYS`).
const LEDGER_TTL_DAYS: i64 = 90;

/// Days before the period whose canary marks are replayed, so that a canary incident open when
/// the period starts is shown from its first bad probe (a streak longer than this is shown from
/// the start of the look-back).
const LOOK_BACK_DAYS: i64 = 7;

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub period: Period,
    /// Only these source buckets (empty: every bucket in the ledger).
    pub buckets: Vec<String>,
    /// The canary's key segment: its probes are reported as probes, not as data.
    pub canary_segment: Option<CanarySegment>,
}

/// Read the ledger and put the period's evidence together.
pub async fn report<R: ReportReader>(
    reader: &R,
    options: &ReportOptions,
    now: DateTime<Utc>,
) -> Result<Report, LedgerError> {
    let known = reader.source_buckets().await?;
    let buckets = if options.buckets.is_empty() {
        known.clone()
    } else {
        options.buckets.clone()
    };
    let unknown: Vec<String> = buckets
        .iter()
        .filter(|b| !known.contains(b))
        .map(|b| crate::delivery::text::untrusted_brief(b, 100))
        .collect();
    let period = &options.period;
    let window = Window {
        from: period.from,
        to: period.to,
        now,
    };
    let (first, last) = (period.first_day(), period.last_day());
    let days = days_of(first, last);
    let mut sources = Vec::new();
    let mut read = (0usize, 0usize);
    for bucket in buckets {
        // The days before the period too: the canary's incidents are replayed from there.
        let (rollups, earlier): (Vec<DailyRollup>, Vec<DailyRollup>) = reader
            .daily_rollups(
                &bucket,
                first - chrono::Duration::days(LOOK_BACK_DAYS),
                last,
            )
            .await?
            .into_iter()
            .partition(|r| r.day >= first);
        let records: Vec<ObjectRecord> = reader
            .object_records(&bucket)
            .await?
            .into_iter()
            .filter(|r| {
                !options
                    .canary_segment
                    .as_ref()
                    .is_some_and(|s| s.owns(&r.key))
            })
            .collect();
        read.0 += rollups.len() + earlier.len();
        read.1 += records.len();
        let incidents = reader.incidents(&bucket).await?;
        let audit_days = reader.audit_days(&bucket, first, last).await?;
        // Finished re-drives, and the latest (which may still run) in place of its copy.
        let mut redrives = reader.redrives(&bucket).await?;
        if let Some(latest) = reader.latest_redrive(&bucket).await? {
            redrives
                .retain(|r| (r.attempt, r.requested_at) != (latest.attempt, latest.requested_at));
            redrives.push(latest);
        }
        redrives.sort_by_key(|r| r.attempt);
        let source = Source {
            bucket: &bucket,
            rollups: &rollups,
            earlier: &earlier,
            records: &records,
            incidents: &incidents,
            redrives: &redrives,
        };
        sources.push(source.report(&window, &days, &audit_days));
    }
    let mut summary: Vec<SummaryRow> = sources
        .iter()
        .flat_map(|s| s.rules.iter())
        .map(summary_row)
        .collect();
    summary.sort_by_key(|row| row.verdict.level);
    let error = histogram_error();
    let notes = notes(period, now, error, read, unknown);
    Ok(Report {
        generated_at: now,
        period: period.clone(),
        target_seconds: TARGET_MS / 1000,
        percentile_error: error,
        summary,
        sources,
        notes,
    })
}

/// What the figures are and are not, and what was read.
fn notes(
    period: &Period,
    now: DateTime<Utc>,
    error: f64,
    read: (usize, usize),
    unknown: Vec<String>,
) -> Vec<String> {
    let mut notes: Vec<String> = vec![
        "All times are UTC; days are UTC days.".into(),
        "Canary figures are probe-sampled: one probe per rule and destination each canary run. S3's Replication Time Control SLA counts all objects; the confidence interval (95%, Wilson score) is for the sampled share.".into(),
        format!("Latency percentiles come from the canary's daily log-scale histograms ({} buckets per doubling) and are within ±{:.1}% of the exact value; the maximum is exact.", crate::canary::rollup::BUCKETS_PER_OCTAVE, error * 100.0),
        "Blind time is the longest time between probes that replicated, between a rule's first probe in the period and its last probe's outcome.".into(),
        "Event figures count distinct object versions S3 reported (failed, missed the threshold, replicated after it); the canary's own probe objects are left out. A replication incident is judged as of the period's end from its object versions: open while one was missing then, else resolved when its last one was repaired (a re-drive, or a late arrival).".into(),
        "Canary incidents are replayed from the probes (and the week before the period) with the canary's own rule: its bad probes in a row, or one failure, open one; the next probe that arrives in time closes it. Their \"paged\" time is when that rule paged.".into(),
        format!("Read {} daily roll-ups and {} object records.", read.0, read.1),
    ];
    if period.to > now {
        notes.push(format!(
            "The period has not ended: figures run to {} (generated), and \"at the end of the period\" means then.",
            now.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if period.from < now - chrono::Duration::days(LEDGER_TTL_DAYS) {
        notes.push(format!("Object records and incidents expire after REPLMON_LEDGER_TTL_DAYS ({LEDGER_TTL_DAYS} by default) while the canary's roll-ups stay 400 days: event figures of a period that long ago may be incomplete."));
    }
    notes.extend(unknown.into_iter().map(|bucket| {
        format!("The ledger has no record of bucket {bucket}: check the name (--bucket).")
    }));
    notes
}

struct Source<'a> {
    bucket: &'a str,
    rollups: &'a [DailyRollup],
    earlier: &'a [DailyRollup],
    records: &'a [ObjectRecord],
    incidents: &'a [Incident],
    redrives: &'a [RedriveRecord],
}

/// What one rule and destination of a source has, gathered in one pass over the source.
#[derive(Default)]
struct RuleInputs<'a> {
    rollups: Vec<&'a DailyRollup>,
    earlier: Vec<&'a DailyRollup>,
    records: Vec<&'a ObjectRecord>,
    spans: Vec<IncidentSpan>,
    /// Something of it falls in the period (roll-ups of the week before alone do not count).
    active: bool,
}

impl<'a> Source<'a> {
    fn report(&self, window: &Window, days: &[NaiveDate], audit: &[AuditDay]) -> SourceReport {
        // Rules with anything in the period: canary days, object versions, incidents.
        let mut inputs: BTreeMap<(&'a str, &'a str), RuleInputs<'a>> = BTreeMap::new();
        for rollup in self.rollups {
            let entry = inputs
                .entry((rollup.rule_id.as_str(), rollup.destination_bucket.as_str()))
                .or_default();
            entry.rollups.push(rollup);
            entry.active = true;
        }
        for rollup in self.earlier {
            inputs
                .entry((rollup.rule_id.as_str(), rollup.destination_bucket.as_str()))
                .or_default()
                .earlier
                .push(rollup);
        }
        for record in self.records {
            let entry = inputs
                .entry((record.rule_id.as_str(), record.destination_bucket.as_str()))
                .or_default();
            entry.records.push(record);
            entry.active |= window.holds(record.failed_at)
                || window.holds(record.late_at)
                || window.holds(record.replicated_late_at)
                || super::events::missing_at(record, window.end());
        }
        for incident in self.incidents {
            let entry = inputs
                .entry((
                    incident.key.rule_id.as_str(),
                    incident.key.destination_bucket.as_str(),
                ))
                .or_default();
            if let Some(span) = incident_span(incident, &entry.records, self.redrives, window) {
                entry.spans.push(span);
                entry.active = true;
            }
        }
        let mut rules: Vec<RuleReport> = inputs
            .into_iter()
            .filter(|(_, inputs)| inputs.active)
            .map(|((rule, destination), inputs)| self.rule(rule, destination, inputs, window, days))
            .collect();
        // Worst verdict first; among equals, the best-evidenced (most probes) first.
        rules.sort_by_key(|r| (r.verdict.level, std::cmp::Reverse(r.canary.outcomes.total)));
        SourceReport {
            source_bucket: self.bucket.to_owned(),
            rules,
            redrives: self
                .redrives
                .iter()
                .filter_map(|r| redrive_summary(r, window))
                .collect(),
            audit_findings: findings(audit),
            not_tracked: self
                .incidents
                .iter()
                .filter(|i| {
                    i.key.cause == IncidentCause::NotTracked
                        && i.opened_at < window.to
                        && i.last_seen.is_none_or(|at| at >= window.from)
                })
                .map(|i| NotTrackedCount {
                    rule_id: i.key.rule_id.clone(),
                    destination_bucket: i.key.destination_bucket.clone(),
                    events: i.event_count,
                    first_seen: i.first_seen,
                    last_seen: i.last_seen,
                })
                .collect(),
        }
    }

    fn rule(
        &self,
        rule: &str,
        destination: &str,
        inputs: RuleInputs<'_>,
        window: &Window,
        days: &[NaiveDate],
    ) -> RuleReport {
        let RuleInputs {
            rollups,
            earlier,
            records,
            spans,
            ..
        } = inputs;
        let (canary, canary_incidents) = canary_figures(&rollups, &earlier, days);
        let events = event_figures(&records, window);
        let mut incidents: Vec<IncidentSpan> = spans.into_iter().chain(canary_incidents).collect();
        incidents.sort_by_key(|i| i.opened_at);
        let exposure = exposure(&records, window);
        let mut verdict = verdict(&canary, &events, &exposure);
        if let Some(gap) = coverage_gap(&canary, window) {
            // Probes that start late or stop early leave days unevidenced: worth a look even
            // when every probe there was fine (a rule added or removed on purpose explains it).
            if verdict.level == VerdictLevel::Met {
                verdict.level = VerdictLevel::AtRisk;
                verdict.text = gap;
            } else {
                verdict.text = format!("{}; {gap}", verdict.text);
            }
        }
        RuleReport {
            source_bucket: self.bucket.to_owned(),
            rule_id: rule.to_owned(),
            destination_bucket: destination.to_owned(),
            verdict,
            canary,
            events,
            incidents,
            exposure,
        }
    }
}

fn findings(days: &[AuditDay]) -> Vec<AuditFindingSeen> {
    let mut seen: Vec<AuditFindingSeen> = Vec::new();
    for day in days {
        for finding in &day.findings {
            match seen.iter_mut().find(|s| s.id == finding.id) {
                Some(s) => {
                    // Days come in order; one id noted twice on a day is one day.
                    if s.last_day != day.day {
                        s.days += 1;
                    }
                    s.first_day = s.first_day.min(day.day);
                    s.last_day = s.last_day.max(day.day);
                    s.summary.clone_from(&finding.summary);
                    s.severity.clone_from(&finding.severity);
                }
                None => seen.push(AuditFindingSeen {
                    id: finding.id.clone(),
                    severity: finding.severity.clone(),
                    summary: finding.summary.clone(),
                    first_day: day.day,
                    last_day: day.day,
                    days: 1,
                }),
            }
        }
    }
    seen
}

/// A share as the verdicts and the terminal summary write it: `99.71%`.
pub(super) fn percent(share: &Share) -> String {
    format!("{:.2}%", share.share * 100.0)
}

/// Whether the canary's probes of a rule leave more than a day of the period (to now)
/// unprobed at its start or end, said as a verdict clause.
fn coverage_gap(canary: &CanaryFigures, window: &Window) -> Option<String> {
    let (first, last) = (canary.first_probe_at?, canary.last_probe_at?);
    let day = chrono::Duration::days(1);
    let late_start = first - window.from > day;
    let early_stop = window.end() - last > day;
    (late_start || early_stop).then(|| {
        format!(
            "probed only from {} to {}",
            first.format("%Y-%m-%d %H:%M"),
            last.format("%Y-%m-%d %H:%M UTC")
        )
    })
}

/// One line per rule: the worst thing the period shows, or that the target was met.
pub fn verdict(canary: &CanaryFigures, events: &EventFigures, exposure: &Exposure) -> Verdict {
    let o = &canary.outcomes;
    let mut missed = Vec::new();
    if events.failed_versions > 0 {
        let reasons: Vec<&str> = events
            .failed_by_reason
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        missed.push(format!(
            "{} object versions failed ({})",
            events.failed_versions,
            reasons.join(", ")
        ));
    }
    let lost = o.missing + o.stalled + o.failed;
    if lost > 0 {
        missed.push(format!(
            "{lost} of {} probes not replicated by the canary's deadline",
            o.total
        ));
    }
    if exposure.versions_at_end > 0 {
        missed.push(format!(
            "{} versions missing from the replica at the end of the period",
            exposure.versions_at_end
        ));
    }
    if !missed.is_empty() {
        return Verdict {
            level: VerdictLevel::Missed,
            text: missed.join("; "),
        };
    }
    let mut risk = Vec::new();
    if let Some(share) = canary.within_target.as_ref().filter(|s| s.hits < s.of) {
        risk.push(format!(
            "{} of probes within 15 minutes ({} of {})",
            percent(share),
            share.hits,
            share.of
        ));
    }
    if events.missed_threshold > 0 {
        risk.push(format!(
            "{} object versions missed the replication threshold",
            events.missed_threshold
        ));
    }
    if o.cannot_verify > 0 {
        risk.push(format!("{} probes could not be verified", o.cannot_verify));
    }
    if let Some(blind) = canary.blind.as_ref().filter(|b| blind_matters(b)) {
        risk.push(format!("blind for {} min at most", blind.seconds / 60));
    }
    if o.total == 0 {
        risk.push("no canary probes: the latency target is not evidenced".into());
    }
    if !risk.is_empty() {
        let level = if o.total == 0
            && events.missed_threshold == 0
            && events.replicated_after_threshold == 0
        {
            VerdictLevel::NoEvidence
        } else {
            VerdictLevel::AtRisk
        };
        return Verdict {
            level,
            text: risk.join("; "),
        };
    }
    let p99 = canary.latency.as_ref().map(|l| l.p99_ms).unwrap_or(0);
    Verdict {
        level: VerdictLevel::Met,
        text: format!(
            "all {} probes replicated within 15 minutes (p99 {:.1} s); no failed versions; nothing missing at the end",
            o.total,
            p99 as f64 / 1000.0
        ),
    }
}

fn summary_row(rule: &RuleReport) -> SummaryRow {
    SummaryRow {
        source_bucket: rule.source_bucket.clone(),
        rule_id: rule.rule_id.clone(),
        destination_bucket: rule.destination_bucket.clone(),
        verdict: rule.verdict.clone(),
        probes: rule.canary.outcomes.total,
        within_target: rule.canary.within_target.clone(),
        p99_ms: rule.canary.latency.as_ref().map(|l| l.p99_ms),
        failed_versions: rule.events.failed_versions,
        incidents: rule.incidents.len() as u64,
        backlog_at_end: rule.exposure.versions_at_end,
    }
}
