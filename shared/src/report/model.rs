//! What a report says, as data: the HTML, Markdown and JSON renderers all read this, so the
//! three formats carry the same figures. Times are UTC; latencies in milliseconds.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// The month's (or range's) replication evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub period: Period,
    /// Replication Time Control's target (15 minutes), in seconds.
    pub target_seconds: u64,
    /// How far a percentile read from the canary's histograms can be from the exact one, as a
    /// share (half a bucket: 0.022 is ±2.2%).
    pub percentile_error: f64,
    /// One row per source, rule and destination, worst verdict first.
    pub summary: Vec<SummaryRow>,
    pub sources: Vec<SourceReport>,
    /// What the figures are and are not (probe-sampled, UTC, what was read).
    pub notes: Vec<String>,
}

/// The reported range: `[from, to)`, UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// "2026-11" for a month, "2026-11-03 to 2026-11-17" for a range.
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictLevel {
    /// Objects were lost to the replica, or the canary saw replication fail or go missing.
    Missed,
    /// Replication worked, but not always within 15 minutes, or the canary was blind a while.
    AtRisk,
    /// No canary probe and no event: nothing to judge by.
    NoEvidence,
    /// Every probe within 15 minutes, nothing failed, nothing missing at the end.
    Met,
}

impl VerdictLevel {
    pub fn label(self) -> &'static str {
        match self {
            VerdictLevel::Missed => "MISSED",
            VerdictLevel::AtRisk => "AT RISK",
            VerdictLevel::NoEvidence => "NO EVIDENCE",
            VerdictLevel::Met => "MET",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub level: VerdictLevel,
    /// One line: why.
    pub text: String,
}

/// The summary table's row for one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub source_bucket: String,
    pub rule_id: String,
    pub destination_bucket: String,
    pub verdict: Verdict,
    pub probes: u64,
    /// Share of verified probes within 15 minutes, if any were verified.
    pub within_target: Option<Share>,
    pub p99_ms: Option<u64>,
    pub failed_versions: u64,
    pub incidents: u64,
    pub backlog_at_end: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    pub source_bucket: String,
    pub rules: Vec<RuleReport>,
    /// Re-drives of this source that ran in the period (the ledger keeps the latest).
    pub redrives: Vec<RedriveSummary>,
    /// Configuration findings the canary's audit reported on days of the period.
    pub audit_findings: Vec<AuditFindingSeen>,
    /// `OperationNotTracked` events: counted per incident since it opened, not per day.
    pub not_tracked: Vec<NotTrackedCount>,
}

/// One rule and destination of a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleReport {
    pub source_bucket: String,
    pub rule_id: String,
    pub destination_bucket: String,
    pub verdict: Verdict,
    pub canary: CanaryFigures,
    pub events: EventFigures,
    /// Replication incidents (from S3's events) and canary incidents open during the period,
    /// in the order they opened.
    pub incidents: Vec<IncidentSpan>,
    pub exposure: Exposure,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutcomeFigures {
    pub arrived: u64,
    pub slow: u64,
    pub missing: u64,
    pub stalled: u64,
    pub failed: u64,
    pub cannot_verify: u64,
    pub total: u64,
}

/// A share with its 95% confidence interval (Wilson score), for a sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    pub hits: u64,
    pub of: u64,
    pub share: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyFigures {
    /// Probes with a latency (those that replicated).
    pub samples: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    /// Exact, not from the histogram.
    pub max_ms: u64,
}

/// One UTC day of the latency chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayLatency {
    pub day: NaiveDate,
    pub probes: u64,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// One bar of the latency histogram picture: latencies in `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramBar {
    pub from_ms: u64,
    pub to_ms: u64,
    pub count: u64,
}

/// The longest time between two probes that replicated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlindSpan {
    pub seconds: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryFigures {
    pub outcomes: OutcomeFigures,
    pub latency: Option<LatencyFigures>,
    /// Verified probes that replicated within 15 minutes.
    pub within_target: Option<Share>,
    /// Verified probes that arrived within the canary's threshold (`threshold_seconds`).
    pub within_threshold: Option<Share>,
    /// The canary's latency threshold(s) in the period, in seconds (more than one if changed).
    pub threshold_seconds: Vec<u64>,
    pub blind: Option<BlindSpan>,
    pub first_probe_at: Option<DateTime<Utc>>,
    pub last_probe_at: Option<DateTime<Utc>>,
    /// Every day of the period, probed or not.
    pub days: Vec<DayLatency>,
    pub histogram: Vec<HistogramBar>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub versions: u64,
    /// What the reason means and what to do (the failure catalog).
    pub meaning: String,
    pub fix: String,
}

/// An object version that missed the threshold in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateVersion {
    pub key: String,
    pub version_id: Option<String>,
    pub late_at: Option<DateTime<Utc>>,
    pub replicated_at: Option<DateTime<Utc>>,
    /// S3's `replicationTime` when it arrived.
    pub replication_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventFigures {
    /// Versions S3 reported failed in the period, by `failureReason`, most first.
    pub failed_by_reason: Vec<ReasonCount>,
    pub failed_versions: u64,
    pub missed_threshold: u64,
    pub replicated_after_threshold: u64,
    /// The slowest late versions (at most [`MAX_LATE_LISTED`](super::MAX_LATE_LISTED)).
    pub late_versions: Vec<LateVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentSource {
    /// S3's replication events (failed or late objects).
    Events,
    /// The canary's probes.
    Canary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentSpan {
    pub source: IncidentSource,
    /// "FAILED:AssumeRoleNotPermitted", "LATE", "canary: MISSING", ...
    pub cause: String,
    pub opened_at: DateTime<Utc>,
    pub first_failure_at: Option<DateTime<Utc>>,
    pub paged_at: Option<DateTime<Utc>>,
    /// `None`: still open at the end of the period.
    pub resolved_at: Option<DateTime<Utc>>,
    pub seconds_to_page: Option<i64>,
    pub seconds_to_resolve: Option<i64>,
    /// Object versions (events) or bad probes (canary).
    pub count: u64,
    /// How the resolution is known ("backlog emptied", "re-drive", "probe arrived").
    pub resolution: Option<String>,
}

/// What a failover would have lost: object versions missing from the replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Exposure {
    pub versions_at_end: u64,
    pub bytes_at_end: u64,
    pub versions_now: u64,
    pub bytes_now: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedriveSummary {
    pub destination_bucket: Option<String>,
    pub attempt: u32,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub replicated: u64,
    pub still_failing: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFindingSeen {
    pub id: String,
    pub severity: String,
    pub summary: String,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotTrackedCount {
    pub rule_id: String,
    pub destination_bucket: String,
    pub events: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}
