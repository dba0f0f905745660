//! A re-drive's plan: which incidents it repairs, whether their cause is shown to be cleared,
//! the batch job that does it, what it costs, and what it cannot do.

use super::RedriveSettings;
use crate::canary::probe::{ProbeStatus, RuleHealth};
use crate::incident::{Incident, IncidentCause};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// What to re-drive: a source bucket's `FAILED` object versions, for one destination or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub source_bucket: String,
    pub destination_bucket: Option<String>,
}

impl Scope {
    pub fn covers(&self, incident: &Incident) -> bool {
        incident.key.source_bucket == self.source_bucket
            && matches!(incident.key.cause, IncidentCause::Failure(_))
            && self
                .destination_bucket
                .as_deref()
                .is_none_or(|d| d == incident.key.destination_bucket)
    }

    /// `SOURCE -> DEST` (or `-> all destinations`), for notices.
    pub fn describe(&self) -> String {
        format!(
            "{} -> {}",
            self.source_bucket,
            self.destination_bucket
                .as_deref()
                .unwrap_or("all destinations")
        )
    }
}

/// Whether an incident's cause is shown to be cleared: a canary probe under its rule and
/// destination, written after its last failure, arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The probe put at this time arrived.
    Cleared { probe_at: DateTime<Utc> },
    /// Why not, in a sentence for the operator.
    NotShown(String),
}

pub fn evidence(incident: &Incident, health: &[RuleHealth]) -> Evidence {
    let key = &incident.key;
    let Some(rule) = health.iter().find(|h| {
        h.source_bucket == key.source_bucket
            && h.destination_bucket == key.destination_bucket
            && h.rule_id == key.rule_id
    }) else {
        return Evidence::NotShown(format!(
            "the canary has no probe under rule {} to {}: is the bucket in REPLMON_CANARY_BUCKETS?",
            key.rule_id, key.destination_bucket
        ));
    };
    let last_failure = incident.last_seen.unwrap_or(incident.opened_at);
    match (rule.last_status, rule.last_probe_at) {
        (Some(ProbeStatus::Arrived | ProbeStatus::Slow), Some(at)) if at > last_failure => {
            Evidence::Cleared { probe_at: at }
        }
        (Some(status), Some(at)) if at > last_failure => Evidence::NotShown(format!(
            "the canary's latest probe under rule {} to {} ({}) did not arrive: {}",
            key.rule_id,
            key.destination_bucket,
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            status.as_str()
        )),
        (_, at) => Evidence::NotShown(format!(
            "no canary probe under rule {} to {} since the last failure ({}){}",
            key.rule_id,
            key.destination_bucket,
            last_failure.format("%Y-%m-%d %H:%M:%S UTC"),
            at.map(|at| format!(
                "; the latest was put at {}",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ))
            .unwrap_or_default()
        )),
    }
}

/// The batch job a re-drive creates (s3control `CreateJob`, operation `S3ReplicateObject`),
/// in the domain's terms; the adapter spells it in the SDK's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub account_id: String,
    /// `ClientRequestToken`: the same re-drive always asks with the same token, so S3 answers
    /// a retried request with the job it already created.
    pub token: String,
    pub description: String,
    pub role_arn: String,
    pub priority: i32,
    /// The manifest is generated from this bucket's versions whose replication `FAILED` and
    /// that are eligible for replication, created after `created_after`.
    pub source_bucket: String,
    pub created_after: DateTime<Utc>,
    /// Where the generated manifest and the completion report (failed tasks only) go: a
    /// bucket of the source's region.
    pub report_bucket: String,
    pub manifest_prefix: String,
    pub report_prefix: String,
}

/// Characters of the token S3 accepts (1..64).
const TOKEN_LENGTH: usize = 64;

/// The token of a re-drive attempt: the source, the incidents it repairs (with when each
/// opened, so a reopened incident is a new one) and the attempt number.
pub fn job_token(source_bucket: &str, incidents: &[&Incident], attempt: u32) -> String {
    let mut hasher = Sha256::new();
    let mut part = |text: &str| {
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    };
    part(source_bucket);
    let mut ids: Vec<String> = incidents
        .iter()
        .map(|i| format!("{}@{}", i.key.id(), i.opened_at.timestamp_millis()))
        .collect();
    ids.sort();
    for id in &ids {
        part(id);
    }
    part(&attempt.to_string());
    let mut token = String::from("replmon-");
    for byte in hasher.finalize() {
        let _ = write!(token, "{byte:02x}");
    }
    token.truncate(TOKEN_LENGTH);
    token
}

/// How far before the oldest failure the manifest starts: S3's object creation time precedes
/// the failure event by the replication attempt, which can take minutes.
const CREATED_BEFORE_FAILURE: i64 = 60;

pub fn job_request(
    settings: &RedriveSettings,
    account_id: &str,
    scope: &Scope,
    incidents: &[&Incident],
    attempt: u32,
) -> JobRequest {
    let oldest = incidents
        .iter()
        .filter_map(|i| i.first_seen.or(Some(i.opened_at)))
        .min()
        .unwrap_or_else(Utc::now);
    let token = job_token(&scope.source_bucket, incidents, attempt);
    JobRequest {
        account_id: account_id.to_owned(),
        description: format!(
            "replmon re-drive of {} (attempt {attempt})",
            scope.describe()
        )
        .chars()
        .take(256)
        .collect(),
        role_arn: settings.role_arn.clone(),
        priority: settings.priority,
        source_bucket: scope.source_bucket.clone(),
        created_after: oldest - Duration::minutes(CREATED_BEFORE_FAILURE),
        report_bucket: settings.report_bucket.clone(),
        manifest_prefix: format!(
            "{}/manifests/{}",
            settings.report_prefix.trim_end_matches('/'),
            scope.source_bucket
        ),
        report_prefix: report_prefix(settings, &scope.source_bucket),
        token,
    }
}

/// Where a source's completion reports go (S3 adds `job-<id>/` under it).
pub fn report_prefix(settings: &RedriveSettings, source_bucket: &str) -> String {
    format!(
        "{}/reports/{source_bucket}",
        settings.report_prefix.trim_end_matches('/')
    )
}

/// The request charges of a job (S3 pricing page, Batch Operations; both overridable): a fee
/// per job and per object version processed. Replicating the data itself is billed as live
/// replication is (requests, transfer, storage in the destination), not counted here.
pub fn estimated_cost(settings: &RedriveSettings, object_versions: u64) -> f64 {
    settings.job_fee_usd + settings.per_object_fee_usd * object_versions as f64
}

/// What the operator should know before a re-drive (outside the product's control).
pub fn caveats() -> Vec<&'static str> {
    vec![
        "object versions deleted by version ID from the destination cannot be batch-replicated again",
        "lifecycle rules on the source may expire or transition versions before the job reaches them",
        "the job re-drives every FAILED version of the source created after the date shown, whichever rule or destination it failed for",
        "versions that replicated since failing (a re-upload, a manual copy) are not in the job: S3 lists only FAILED ones",
    ]
}
