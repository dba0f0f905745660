//! Figures from S3's replication events for one rule and destination: failed versions by
//! reason, late versions, the replication incidents, and what the replica lacked at the end of
//! the period and lacks now.

use super::model::*;
use super::MAX_LATE_LISTED;
use crate::catalog;
use crate::incident::{failure_reason_code, Incident, IncidentCause};
use crate::ledger::{ObjectRecord, ObjectStatus};
use crate::redrive::RedriveRecord;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The reported range, and the time "now" the figures were read at.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl Window {
    pub fn holds(&self, at: Option<DateTime<Utc>>) -> bool {
        at.is_some_and(|at| at >= self.from && at < self.to)
    }

    /// The end of the period, or now if it has not ended.
    pub fn end(&self) -> DateTime<Utc> {
        self.to.min(self.now)
    }
}

/// Missing from the replica at `at`: failed (and not re-driven by then), or late and not
/// arrived by then.
pub fn missing_at(record: &ObjectRecord, at: DateTime<Utc>) -> bool {
    let by = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t <= at);
    if by(record.redriven_at()) {
        return false;
    }
    by(record.failed_at) || (by(record.late_at) && !by(record.replicated_late_at))
}

pub fn event_figures(records: &[&ObjectRecord], window: &Window) -> EventFigures {
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    let mut missed_threshold = 0;
    let mut replicated_after_threshold = 0;
    let mut late: Vec<&ObjectRecord> = Vec::new();
    for record in records {
        if window.holds(record.failed_at) {
            *by_reason
                .entry(failure_reason_code(record.failure_reason.as_deref()))
                .or_default() += 1;
        }
        let was_late = window.holds(record.late_at);
        let arrived_late = window.holds(record.replicated_late_at);
        missed_threshold += u64::from(was_late);
        replicated_after_threshold += u64::from(arrived_late);
        if was_late || arrived_late {
            late.push(record);
        }
    }
    late.sort_by(|a, b| {
        b.replication_time_seconds
            .unwrap_or(f64::INFINITY)
            .total_cmp(&a.replication_time_seconds.unwrap_or(f64::INFINITY))
            .then_with(|| a.late_at.cmp(&b.late_at))
    });
    let mut failed_by_reason: Vec<ReasonCount> = by_reason
        .into_iter()
        .map(|(reason, versions)| {
            let explanation = catalog::explain(reason);
            ReasonCount {
                reason: reason.to_owned(),
                versions,
                meaning: explanation.meaning,
                fix: explanation.fix,
            }
        })
        .collect();
    failed_by_reason.sort_by_key(|r| std::cmp::Reverse(r.versions));
    EventFigures {
        failed_versions: failed_by_reason.iter().map(|r| r.versions).sum(),
        failed_by_reason,
        missed_threshold,
        replicated_after_threshold,
        late_versions: late
            .into_iter()
            .take(MAX_LATE_LISTED)
            .map(|r| LateVersion {
                key: r.key.clone(),
                version_id: r.version_id.clone(),
                late_at: r.late_at,
                replicated_at: r.replicated_late_at,
                replication_seconds: r.replication_time_seconds,
            })
            .collect(),
    }
}

pub fn exposure(records: &[&ObjectRecord], window: &Window) -> Exposure {
    let mut exposure = Exposure::default();
    let end = window.end();
    for record in records {
        let size = record.size.unwrap_or(0);
        if missing_at(record, end) {
            exposure.versions_at_end += 1;
            exposure.bytes_at_end += size;
        }
        if matches!(record.status(), ObjectStatus::Failed | ObjectStatus::Late) {
            exposure.versions_now += 1;
            exposure.bytes_now += size;
        }
    }
    exposure
}

/// Whether a version counts under this cause, and when it joined it.
fn joined(record: &ObjectRecord, cause: &IncidentCause) -> Option<DateTime<Utc>> {
    match cause {
        IncidentCause::Failure(reason) => record
            .failed_at
            .filter(|_| failure_reason_code(record.failure_reason.as_deref()) == reason),
        IncidentCause::Late => record.late_at,
        IncidentCause::NotTracked => None,
    }
}

/// When the version stopped missing for this cause (a re-drive, or a late arrival).
fn repaired_at(record: &ObjectRecord, cause: &IncidentCause) -> Option<DateTime<Utc>> {
    match cause {
        IncidentCause::Late => record.redriven_at().or(record.replicated_late_at),
        _ => record.redriven_at(),
    }
}

/// A replication incident as a span of the period, or `None` when it did not overlap it.
/// Judged as of the period's end from the incident's object versions (`records`: its rule's
/// and destination's): open while one of them was missing then; otherwise resolved when its
/// last version was repaired (by a re-drive, or a late arrival). An incident whose versions are
/// no longer in the ledger (expired, or only canary probes) is judged by its counters now.
pub fn incident_span(
    incident: &Incident,
    records: &[&ObjectRecord],
    redrives: &[RedriveRecord],
    window: &Window,
) -> Option<IncidentSpan> {
    let cause = &incident.key.cause;
    if *cause == IncidentCause::NotTracked || incident.opened_at >= window.to {
        return None;
    }
    let end = window.end();
    let members: Vec<(&ObjectRecord, DateTime<Utc>)> = records
        .iter()
        .filter_map(|r| Some((*r, joined(r, cause).filter(|at| *at <= end)?)))
        .collect();
    let by = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t <= end);
    let (resolved_at, resolution) = if members.is_empty() {
        // Nothing to judge the end by: the counters as they stand now.
        let now_resolved = incident.backlog_count <= 0;
        let at = incident.last_seen.unwrap_or(incident.opened_at);
        match now_resolved {
            true if at <= end => (Some(at), Some("no version missing".to_owned())),
            _ => (None, None),
        }
    } else if members.iter().any(|(r, _)| !by(repaired_at(r, cause))) {
        (None, None)
    } else {
        let last = members
            .iter()
            .filter_map(|(r, _)| Some((repaired_at(r, cause)?, *r)))
            .max_by_key(|(at, _)| *at);
        let how = |record: &ObjectRecord| match record.redrive_job() {
            Some(job) if record.redriven_at().is_some() => redrives
                .iter()
                .find(|r| r.job_id.as_deref() == Some(job))
                .map_or_else(
                    || "re-driven".to_owned(),
                    |r| format!("re-drive attempt {}", r.attempt),
                ),
            _ => "every late version arrived".to_owned(),
        };
        match last {
            Some((at, record)) => (Some(at), Some(how(record))),
            None => (None, None),
        }
    };
    if resolved_at.is_some_and(|at| at < window.from) {
        return None;
    }
    let first = incident.first_seen.or(Some(incident.opened_at));
    let paged_at = incident
        .first_page_at
        .or(incident.last_page_at.filter(|_| incident.pages_sent == 1))
        .filter(|at| *at <= end);
    let count = if members.is_empty() {
        incident.event_count
    } else {
        members.len() as u64
    };
    Some(IncidentSpan {
        source: IncidentSource::Events,
        cause: cause.code(),
        opened_at: incident.opened_at,
        first_failure_at: first,
        paged_at,
        resolved_at,
        seconds_to_page: paged_at.zip(first).map(|(p, f)| (p - f).num_seconds()),
        seconds_to_resolve: resolved_at.zip(first).map(|(r, f)| (r - f).num_seconds()),
        count,
        resolution,
    })
}

pub fn redrive_summary(redrive: &RedriveRecord, window: &Window) -> Option<RedriveSummary> {
    let touched = window.holds(Some(redrive.requested_at)) || window.holds(redrive.finished_at);
    touched.then(|| RedriveSummary {
        destination_bucket: redrive.destination_bucket.clone(),
        attempt: redrive.attempt,
        state: format!("{:?}", redrive.state).to_lowercase(),
        started_at: redrive.requested_at,
        finished_at: redrive.finished_at,
        replicated: redrive.replicated,
        still_failing: redrive.still_failing_count(),
    })
}
