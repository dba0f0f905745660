//! What is broken right now and what the replica lacks: the reports behind `replmon status` and
//! `replmon backlog`, read from the ledger the three functions write.
//!
//! Plain domain code over one read port, [`LedgerReader`]; the DynamoDB adapter and the in-memory
//! fake implement it.

use crate::alarm::{AlarmRecord, AlarmState};
use crate::canary::audit::AuditRecord;
use crate::canary::probe::{ProbeRecord, ProbeStatus, RuleHealth};
use crate::canary::setup::CanarySegment;
use crate::catalog;
use crate::incident::{failure_reason_code, Incident, IncidentCause};
use crate::ledger::{LedgerError, ObjectRecord, ObjectStatus};
use crate::redrive::RedriveRecord;
use crate::severity::Severity;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;

mod render;
mod rows;
#[cfg(test)]
use rows::percentile;
use rows::{alarm_incident, canary_incident, latencies, replication_incident};

/// The canary's bucket-level pseudo rule (the configuration read), not a replication rule.
const CONFIGURATION_RULE: &str = "*";

/// Where reading a backlog page resumes: the sort key of the last object returned. Printed
/// hex-encoded so it survives any shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogCursor(pub String);

impl BacklogCursor {
    pub fn encode(&self) -> String {
        self.0.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(token: &str) -> Result<Self, String> {
        let invalid = || format!("{token:?} is not a cursor printed by `replmon backlog`");
        if token.is_empty() || !token.len().is_multiple_of(2) {
            return Err(invalid());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| {
                token
                    .get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        String::from_utf8(bytes)
            .map(BacklogCursor)
            .map_err(|_| invalid())
    }
}

/// One page of the objects a replica lacks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogPage {
    /// `FAILED` and `LATE` object versions, in sort-key order (destination, key, version).
    pub objects: Vec<ObjectRecord>,
    /// Set when more objects follow.
    pub next: Option<BacklogCursor>,
}

/// Read access to the ledger for reports. Every method is a bounded set of queries.
pub trait LedgerReader: Send + Sync {
    /// Source buckets the functions have recorded anything for.
    fn source_buckets(&self) -> impl Future<Output = Result<Vec<String>, LedgerError>> + Send;

    /// Every alarm the alarm-events function has seen.
    fn alarms(&self) -> impl Future<Output = Result<Vec<AlarmRecord>, LedgerError>> + Send;

    /// A source bucket's replication incidents, with their event counts.
    fn incidents(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<Incident>, LedgerError>> + Send;

    /// Up to `limit` object versions still missing from a destination (`FAILED` or `LATE`),
    /// after `after`.
    fn backlog_page(
        &self,
        source_bucket: &str,
        destination_bucket: Option<&str>,
        after: Option<&BacklogCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<BacklogPage, LedgerError>> + Send;

    /// Probes of a source bucket written at or after `since`.
    fn probes_since(
        &self,
        source_bucket: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<ProbeRecord>, LedgerError>> + Send;

    /// The canary's health record of every rule and destination of a source bucket.
    fn rule_health(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<RuleHealth>, LedgerError>> + Send;

    /// The canary's latest configuration audit of a source bucket.
    fn latest_audit(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Option<AuditRecord>, LedgerError>> + Send;

    /// The source bucket's latest re-drive (running or finished).
    fn latest_redrive(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Option<RedriveRecord>, LedgerError>> + Send;
}

impl<T: LedgerReader> LedgerReader for &T {
    fn source_buckets(&self) -> impl Future<Output = Result<Vec<String>, LedgerError>> + Send {
        (**self).source_buckets()
    }
    fn alarms(&self) -> impl Future<Output = Result<Vec<AlarmRecord>, LedgerError>> + Send {
        (**self).alarms()
    }
    fn incidents(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<Incident>, LedgerError>> + Send {
        (**self).incidents(source_bucket)
    }
    fn backlog_page(
        &self,
        source_bucket: &str,
        destination_bucket: Option<&str>,
        after: Option<&BacklogCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<BacklogPage, LedgerError>> + Send {
        (**self).backlog_page(source_bucket, destination_bucket, after, limit)
    }
    fn probes_since(
        &self,
        source_bucket: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<ProbeRecord>, LedgerError>> + Send {
        (**self).probes_since(source_bucket, since)
    }
    fn rule_health(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<RuleHealth>, LedgerError>> + Send {
        (**self).rule_health(source_bucket)
    }
    fn latest_audit(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Option<AuditRecord>, LedgerError>> + Send {
        (**self).latest_audit(source_bucket)
    }
    fn latest_redrive(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Option<RedriveRecord>, LedgerError>> + Send {
        (**self).latest_redrive(source_bucket)
    }
}

/// What `status` covers.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Canary latency and results, and failures by reason, over this window.
    pub window: Duration,
    /// Only these source buckets (empty: every bucket in the ledger).
    pub buckets: Vec<String>,
    /// The canary's key segment: its probes are not data, so failed probes are left out of the
    /// backlog and its figures (the canary section reports them).
    pub canary_segment: Option<CanarySegment>,
}

impl Default for StatusOptions {
    fn default() -> Self {
        StatusOptions {
            window: Duration::hours(24),
            buckets: Vec::new(),
            canary_segment: CanarySegment::new("replmon-canary/").ok(),
        }
    }
}

/// Leave the canary's probes out of a backlog page.
pub fn without_probes(mut page: BacklogPage, segment: Option<&CanarySegment>) -> BacklogPage {
    if let Some(segment) = segment {
        page.objects.retain(|o| !segment.owns(&o.key));
    }
    page
}

/// Everything `replmon status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub generated_at: DateTime<Utc>,
    pub window_seconds: i64,
    pub source_buckets: Vec<String>,
    /// Open incidents of every kind, most severe first.
    pub incidents: Vec<OpenIncident>,
    /// What a failover would lose now, per source and destination.
    pub backlog: Vec<BacklogSummary>,
    pub canary: Vec<RuleLatency>,
    pub failures_by_reason: Vec<FailureCount>,
    pub findings: Vec<AuditFinding>,
    /// Each source's latest re-drive (running, finished, failed), with its counts.
    pub redrives: Vec<RedriveStatus>,
}

/// A re-drive and the incidents it resolved (no object missing any more).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedriveStatus {
    #[serde(flatten)]
    pub record: RedriveRecord,
    pub resolved_incidents: Vec<String>,
}

/// Which function opened an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentSource {
    Replication,
    Alarm,
    Canary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenIncident {
    pub source: IncidentSource,
    pub severity: Severity,
    /// `src -> dst (rule r)` or the alarm name.
    pub subject: String,
    /// The failure code, `LATE`, `NOT_TRACKED`, an alarm state or a probe status.
    pub cause: String,
    /// The failure reason's meaning, in plain words, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<String>,
    pub opened_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// Objects of this incident the replica still lacks (replication incidents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_missing: Option<u64>,
    /// Distinct events recorded (replication incidents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages_sent: Option<u64>,
    /// Pages held while the alarm flaps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flapping_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogSummary {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub objects: u64,
    pub failed: u64,
    pub late: u64,
    /// Bytes of the objects whose size the events reported.
    pub bytes: u64,
    /// Objects whose size no event reported (`bytes` leaves them out).
    pub objects_without_size: u64,
    pub oldest_since: DateTime<Utc>,
    pub oldest_age_seconds: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleLatency {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    /// Probes written in the window, and how many arrived (with a measured latency).
    pub probes: u64,
    pub arrived: u64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub last_status: Option<ProbeStatus>,
    pub last_probe_at: Option<DateTime<Utc>>,
    pub last_latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureCount {
    pub reason: String,
    pub meaning: String,
    /// Object versions that failed in the window.
    pub objects: u64,
    pub source_buckets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFinding {
    pub source_bucket: String,
    pub id: String,
    pub severity: Severity,
    pub summary: String,
    pub audited_at: DateTime<Utc>,
}

/// How many objects one backlog query reads per round while summarizing.
const SUMMARY_PAGE: usize = 1000;

/// Build the status report.
pub async fn status<R: LedgerReader>(
    reader: &R,
    now: DateTime<Utc>,
    options: &StatusOptions,
) -> Result<StatusReport, LedgerError> {
    let since = now - options.window;
    let buckets = if options.buckets.is_empty() {
        let mut buckets = reader.source_buckets().await?;
        buckets.sort();
        buckets.dedup();
        buckets
    } else {
        options.buckets.clone()
    };
    let mut report = StatusReport {
        generated_at: now,
        window_seconds: options.window.num_seconds(),
        source_buckets: buckets.clone(),
        incidents: Vec::new(),
        backlog: Vec::new(),
        canary: Vec::new(),
        failures_by_reason: Vec::new(),
        findings: Vec::new(),
        redrives: Vec::new(),
    };
    let mut failures: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for bucket in &buckets {
        let backlog = BucketBacklog::read(reader, bucket, options.canary_segment.as_ref()).await?;
        let redrive = reader.latest_redrive(bucket).await?;
        let mut resolved = Vec::new();
        for incident in reader.incidents(bucket).await? {
            let missing = backlog.missing_for(&incident);
            let recent = incident.last_seen.is_some_and(|t| t >= since)
                || incident.last_recorded_at.is_some_and(|t| t >= since);
            // A finished re-drive that left nothing missing after the incident's last failure
            // resolved it, however recent its events.
            let redriven = redrive.as_ref().is_some_and(|r| {
                r.state == crate::redrive::RedriveState::Finished
                    && r.incidents.contains(&incident.key.id())
                    && r.finished_at
                        .is_some_and(|at| incident.last_seen.is_none_or(|l| l < at))
            });
            if missing == 0 && redriven {
                resolved.push(incident.key.id());
                continue;
            }
            // An incident stays in the ledger until its TTL; it is open while the replica still
            // lacks its objects or while events keep coming.
            if missing > 0 || recent {
                report
                    .incidents
                    .push(replication_incident(&incident, missing));
            }
        }
        if let Some(record) = redrive {
            report.redrives.push(RedriveStatus {
                record,
                resolved_incidents: resolved,
            });
        }
        for object in &backlog.objects {
            if let Some(at) = object.failed_at {
                if at >= since {
                    let reason = failure_reason_code(object.failure_reason.as_deref());
                    let entry = failures.entry(reason.to_owned()).or_default();
                    entry.0 += 1;
                    if !entry.1.contains(bucket) {
                        entry.1.push(bucket.clone());
                    }
                }
            }
        }
        report.backlog.extend(backlog.summaries(bucket, now));
        let probes = reader.probes_since(bucket, since).await?;
        let health = reader.rule_health(bucket).await?;
        report.canary.extend(latencies(&probes, &health));
        report
            .incidents
            .extend(health.iter().filter_map(canary_incident));
        if let Some(audit) = reader.latest_audit(bucket).await? {
            report
                .findings
                .extend(audit.findings.into_iter().map(|f| AuditFinding {
                    source_bucket: bucket.clone(),
                    id: f.id,
                    severity: f.severity,
                    summary: f.summary,
                    audited_at: audit.audited_at,
                }));
        }
    }
    if options.buckets.is_empty() {
        report
            .incidents
            .extend(reader.alarms().await?.iter().filter_map(alarm_incident));
    }
    report.failures_by_reason = failures
        .into_iter()
        .map(|(reason, (objects, source_buckets))| FailureCount {
            meaning: catalog::explain(&reason).meaning,
            reason,
            objects,
            source_buckets,
        })
        .collect();
    report
        .failures_by_reason
        .sort_by(|a, b| b.objects.cmp(&a.objects).then(a.reason.cmp(&b.reason)));
    report.incidents.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.opened_at.cmp(&b.opened_at))
    });
    report
        .findings
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    Ok(report)
}

impl StatusReport {
    /// Nothing listed at all: not an error, but worth saying plainly.
    pub fn is_empty(&self) -> bool {
        self.source_buckets.is_empty() && self.incidents.is_empty()
    }

    /// The report as tables for people.
    pub fn to_text(&self) -> String {
        render::status(self)
    }
}

/// Every missing object of one source bucket (read once, used for the backlog, the incidents'
/// missing counts and failures by reason).
struct BucketBacklog {
    objects: Vec<ObjectRecord>,
}

impl BucketBacklog {
    async fn read<R: LedgerReader>(
        reader: &R,
        bucket: &str,
        canary: Option<&CanarySegment>,
    ) -> Result<Self, LedgerError> {
        let mut objects = Vec::new();
        let mut after: Option<BacklogCursor> = None;
        loop {
            let page = reader
                .backlog_page(bucket, None, after.as_ref(), SUMMARY_PAGE)
                .await?;
            let next = page.next.clone();
            objects.extend(without_probes(page, canary).objects);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(BucketBacklog { objects }),
            }
        }
    }

    fn missing_for(&self, incident: &Incident) -> u64 {
        let key = &incident.key;
        self.objects
            .iter()
            .filter(|o| {
                o.destination_bucket == key.destination_bucket
                    && o.rule_id == key.rule_id
                    && match (&key.cause, o.status()) {
                        (IncidentCause::Failure(reason), ObjectStatus::Failed) => {
                            failure_reason_code(o.failure_reason.as_deref()) == reason
                        }
                        (IncidentCause::Late, ObjectStatus::Late) => true,
                        _ => false,
                    }
            })
            .count() as u64
    }

    fn summaries(&self, bucket: &str, now: DateTime<Utc>) -> Vec<BacklogSummary> {
        let mut by_destination: BTreeMap<&str, BacklogSummary> = BTreeMap::new();
        for object in &self.objects {
            let since = object
                .failed_at
                .or(object.late_at)
                .unwrap_or(object.first_seen);
            let summary = by_destination
                .entry(object.destination_bucket.as_str())
                .or_insert_with(|| BacklogSummary {
                    source_bucket: bucket.to_owned(),
                    destination_bucket: object.destination_bucket.clone(),
                    objects: 0,
                    failed: 0,
                    late: 0,
                    bytes: 0,
                    objects_without_size: 0,
                    oldest_since: since,
                    oldest_age_seconds: 0,
                });
            summary.objects += 1;
            match object.status() {
                ObjectStatus::Failed => summary.failed += 1,
                _ => summary.late += 1,
            }
            match object.size {
                Some(size) => summary.bytes += size,
                None => summary.objects_without_size += 1,
            }
            summary.oldest_since = summary.oldest_since.min(since);
        }
        by_destination
            .into_values()
            .map(|mut s| {
                s.oldest_age_seconds = (now - s.oldest_since).num_seconds().max(0);
                s
            })
            .collect()
    }
}

/// A backlog page as rows for people.
pub fn backlog_text(page: &BacklogPage, now: DateTime<Utc>) -> String {
    render::backlog(page, now)
}

#[cfg(test)]
mod tests;
