//! Figures from S3's replication events for one rule and destination: failed versions by
//! reason, late versions, the replication incidents, and what the replica lacked at the end of
//! the period and lacks now.

use super::model::*;
use super::MAX_LATE_LISTED;
use crate::catalog;
use crate::incident::{failure_reason_code, Incident, IncidentCause};
use crate::ledger::{ObjectRecord, ObjectStatus};
use crate::redrive::{RedriveRecord, RedriveState};
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

/// A replication incident as a span of the period, or `None` when it did not overlap it.
/// Incidents keep no close time: one whose backlog is empty is resolved at its last event, or
/// when the re-drive that repaired it finished.
pub fn incident_span(
    incident: &Incident,
    redrives: &[RedriveRecord],
    window: &Window,
) -> Option<IncidentSpan> {
    if incident.key.cause == IncidentCause::NotTracked || incident.opened_at >= window.to {
        return None;
    }
    let id = incident.key.id();
    let repaired = redrives
        .iter()
        .filter(|r| r.state == RedriveState::Finished && r.incidents.contains(&id))
        .max_by_key(|r| r.finished_at);
    let resolved =
        (incident.backlog_count <= 0).then(|| match repaired.and_then(|r| r.finished_at) {
            Some(at) => (
                at,
                format!("re-drive attempt {}", repaired.map_or(0, |r| r.attempt)),
            ),
            None => {
                let what = match incident.key.cause {
                    IncidentCause::Late => "every late version arrived",
                    _ => "no version missing",
                };
                (
                    incident.last_seen.unwrap_or(incident.opened_at),
                    what.to_owned(),
                )
            }
        });
    if resolved.as_ref().is_some_and(|(at, _)| *at < window.from) {
        return None;
    }
    // Resolved after the period: open at its end.
    let (resolved_at, resolution) = match resolved {
        Some((at, how)) if at < window.to => (Some(at), Some(how)),
        Some((at, how)) => (
            None,
            Some(format!(
                "{how}, after the period ({})",
                at.format("%Y-%m-%d %H:%M UTC")
            )),
        ),
        None => (None, None),
    };
    let first = incident.first_seen.or(Some(incident.opened_at));
    let paged_at = incident
        .first_page_at
        .or(incident.last_page_at.filter(|_| incident.pages_sent == 1));
    Some(IncidentSpan {
        source: IncidentSource::Events,
        cause: incident.key.cause.code(),
        opened_at: incident.opened_at,
        first_failure_at: first,
        paged_at,
        resolved_at,
        seconds_to_page: paged_at.zip(first).map(|(p, f)| (p - f).num_seconds()),
        seconds_to_resolve: resolved_at.zip(first).map(|(r, f)| (r - f).num_seconds()),
        count: incident.event_count,
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
