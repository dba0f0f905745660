//! The canary's ports: the object store it probes (S3), the store of its records (the ledger
//! table) and the metrics it emits.

use super::audit::AuditRecord;
use super::kms::KmsRefusal;
use super::probe::{ProbeRecord, RuleHealth};
use super::rollup::DailyRollup;
use super::setup::ReplicationSetup;
use crate::ledger::LedgerError;
use chrono::{DateTime, NaiveDate, Utc};
use std::future::Future;

/// Why S3 could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist.
    #[error("{operation} on bucket {bucket}: the bucket does not exist")]
    NoSuchBucket {
        operation: &'static str,
        bucket: String,
    },
    /// The canary's role may not do this (a HEAD of a missing key also answers 403 without
    /// `s3:ListBucket`).
    #[error("{operation} on bucket {bucket} was denied: {detail}")]
    Denied {
        operation: &'static str,
        bucket: String,
        detail: String,
    },
    /// No answer: timeout, connection failure, 5xx, throttling that outlasted the retries.
    #[error("{operation} on bucket {bucket} got no usable answer: {detail}")]
    Unreachable {
        operation: &'static str,
        bucket: String,
        detail: String,
    },
    /// KMS refused the bucket's key (SSE-KMS), and S3 passed the refusal on: a grant missing
    /// from the caller's policy or the key policy, or a key disabled, pending deletion or not
    /// found. A retry does not help until someone changes the grant or the key.
    #[error("{operation} on bucket {bucket} was refused by KMS: {refusal}")]
    Kms {
        operation: &'static str,
        bucket: String,
        /// Boxed: it is larger than every other error, and errors travel in every `Result`.
        refusal: Box<KmsRefusal>,
    },
    /// Anything else S3 refused (validation, ...).
    #[error("{operation} on bucket {bucket} failed: {detail}")]
    Refused {
        operation: &'static str,
        bucket: String,
        detail: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed later without anyone changing anything (no answer);
    /// every other error needs a fix first (the next scheduled run tries again anyway).
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}

/// Default encryption of a bucket, which the probe PUT repeats explicitly (bucket policies often
/// deny PUTs that do not name it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultEncryption {
    /// SSE-S3 (`AES256`).
    S3Managed,
    /// SSE-KMS (`aws:kms` or `aws:kms:dsse`) with the bucket's key, if it names one.
    Kms {
        algorithm: String,
        key_id: Option<String>,
    },
}

/// A bucket's versioning status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Versioning {
    Enabled,
    Suspended,
    NeverEnabled,
    /// The answer could not be read; the audit does not guess.
    #[default]
    Unknown,
}

impl Versioning {
    /// Known to be off: replication into or out of the bucket cannot work.
    pub fn is_off(&self) -> bool {
        matches!(self, Versioning::Suspended | Versioning::NeverEnabled)
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Versioning::Enabled => "enabled",
            Versioning::Suspended => "suspended",
            Versioning::NeverEnabled => "never enabled",
            Versioning::Unknown => "unknown",
        }
    }
}

/// What the canary needs to know about a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketFacts {
    /// `None`: could not be learned (the bucket's own client defaults to the function's region).
    pub region: Option<String>,
    pub versioning: Versioning,
    pub encryption: Option<DefaultEncryption>,
    /// Some notification configuration sends `s3:Replication:*` events somewhere (`None`: not
    /// read, or unreadable).
    pub replication_events_configured: Option<bool>,
}

/// A bucket and, when known, its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRef<'a> {
    pub bucket: &'a str,
    pub region: Option<&'a str>,
}

/// The probe object as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeObject<'a> {
    pub key: &'a str,
    pub body: &'a str,
    pub tags: &'a [(String, String)],
    pub encryption: Option<&'a DefaultEncryption>,
}

/// What a HEAD found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFacts {
    pub version_id: Option<String>,
    /// `x-amz-replication-status`: PENDING, COMPLETED, FAILED on a source; REPLICA on a replica.
    pub replication_status: Option<String>,
    /// The `replmon-probe` metadata: the probe's token ([`super::probe::probe_token`]).
    pub probe_token: Option<String>,
}

/// S3, as the canary uses it.
pub trait ObjectStore: Send + Sync {
    /// The replication configuration; `None` when the bucket has none.
    fn replication(
        &self,
        bucket: BucketRef<'_>,
    ) -> impl Future<Output = Result<Option<ReplicationSetup>, StoreError>> + Send;

    /// Region, versioning, default encryption and notification set-up. `with_notifications`
    /// skips the notification read where it does not matter (destinations).
    fn facts(
        &self,
        bucket: &str,
        with_notifications: bool,
    ) -> impl Future<Output = Result<BucketFacts, StoreError>> + Send;

    /// Write a probe; the answer is its version ID.
    fn put(
        &self,
        bucket: BucketRef<'_>,
        object: ProbeObject<'_>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// HEAD a key; `Ok(None)` when it is not there.
    fn head(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<ObjectFacts>, StoreError>> + Send;

    /// Delete the probe's versions at exactly this key: `version_id` only when given (the one
    /// the PUT answered), else every version; and only those whose `replmon-probe` metadata
    /// holds the probe's token (checked with a HEAD of the version). Versions someone else
    /// wrote there are left alone. How many went.
    fn delete_probe(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;
}

/// The canary's records in the ledger table.
pub trait CanaryStore: Send + Sync {
    /// Claim a run for a bucket; `false` when this run was already started (a redelivered
    /// schedule), so no second probe is written.
    fn claim_run(
        &self,
        source_bucket: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Write a probe record; pending probes are also listed for later runs, resolved ones are not.
    fn save_probe(
        &self,
        probe: &ProbeRecord,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Probes of a bucket still pending from earlier runs.
    fn pending_probes(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<ProbeRecord>, LedgerError>> + Send;

    /// The health of a rule and destination, and its revision.
    fn health(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
    ) -> impl Future<Output = Result<Option<(RuleHealth, u64)>, LedgerError>> + Send;

    /// Write the health record if its revision is still `expected`; `false` when another run
    /// wrote first.
    fn put_health(
        &self,
        health: &RuleHealth,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Claim the right to send one audit notice: `false` when the same finding was noticed less
    /// than `period` ago.
    fn claim_notice(
        &self,
        source_bucket: &str,
        finding: &str,
        now: DateTime<Utc>,
        period: chrono::Duration,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Give a claim back after the notice could not be sent, so the next run tries again.
    fn release_notice(
        &self,
        source_bucket: &str,
        finding: &str,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Keep a bucket's latest audit (replacing the previous one), for `replmon status`.
    fn save_audit(
        &self,
        audit: &AuditRecord,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The failure reason the replication-events function recorded for this object version,
    /// if S3 reported its replication as failed.
    fn replication_failure(
        &self,
        probe: &ProbeRecord,
    ) -> impl Future<Output = Result<Option<String>, LedgerError>> + Send;

    /// Hand a recovered rule to the redrive function (automatic re-drive): idempotent, the
    /// latest probe kept.
    fn hand_over_redrive(
        &self,
        hand: &crate::redrive::HandOver,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// A day's roll-up of a rule and destination, and its revision (read consistently).
    fn daily_rollup(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
        day: NaiveDate,
    ) -> impl Future<Output = Result<Option<(DailyRollup, u64)>, LedgerError>> + Send;

    /// Write a day's roll-up if its revision is still `expected`; `false` when another run
    /// wrote first.
    fn put_daily_rollup(
        &self,
        rollup: &DailyRollup,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Add an audit's findings to its day's set (a union: repeating it changes nothing), for
    /// the findings `replmon report` lists as open during a period.
    fn note_findings(
        &self,
        audit: &AuditRecord,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// One measured probe, as a metric data point.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeMeasurement<'a> {
    pub source_bucket: &'a str,
    pub destination_bucket: &'a str,
    pub rule_id: &'a str,
    pub at: DateTime<Utc>,
    pub success: bool,
    pub latency_seconds: Option<f64>,
    pub uncertainty_seconds: Option<f64>,
}

/// Where probe metrics go (CloudWatch Embedded Metric Format in production).
pub trait ProbeMetrics: Send + Sync {
    fn record(&self, measurement: &ProbeMeasurement<'_>);
}

impl<T: ObjectStore> ObjectStore for &T {
    fn replication(
        &self,
        bucket: BucketRef<'_>,
    ) -> impl Future<Output = Result<Option<ReplicationSetup>, StoreError>> + Send {
        (**self).replication(bucket)
    }
    fn facts(
        &self,
        bucket: &str,
        with_notifications: bool,
    ) -> impl Future<Output = Result<BucketFacts, StoreError>> + Send {
        (**self).facts(bucket, with_notifications)
    }
    fn put(
        &self,
        bucket: BucketRef<'_>,
        object: ProbeObject<'_>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).put(bucket, object)
    }
    fn head(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<ObjectFacts>, StoreError>> + Send {
        (**self).head(bucket, key, version_id)
    }
    fn delete_probe(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send {
        (**self).delete_probe(bucket, key, version_id)
    }
}

impl<T: ProbeMetrics> ProbeMetrics for &T {
    fn record(&self, measurement: &ProbeMeasurement<'_>) {
        (**self).record(measurement)
    }
}

impl<T: CanaryStore> CanaryStore for &T {
    fn claim_run(
        &self,
        source_bucket: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).claim_run(source_bucket, run_id, expires_at)
    }
    fn save_probe(
        &self,
        probe: &ProbeRecord,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).save_probe(probe, expires_at)
    }
    fn pending_probes(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<ProbeRecord>, LedgerError>> + Send {
        (**self).pending_probes(source_bucket)
    }
    fn health(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
    ) -> impl Future<Output = Result<Option<(RuleHealth, u64)>, LedgerError>> + Send {
        (**self).health(source_bucket, destination_bucket, rule_id)
    }
    fn put_health(
        &self,
        health: &RuleHealth,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).put_health(health, expected, expires_at)
    }
    fn claim_notice(
        &self,
        source_bucket: &str,
        finding: &str,
        now: DateTime<Utc>,
        period: chrono::Duration,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).claim_notice(source_bucket, finding, now, period)
    }
    fn release_notice(
        &self,
        source_bucket: &str,
        finding: &str,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).release_notice(source_bucket, finding)
    }

    fn save_audit(
        &self,
        audit: &AuditRecord,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).save_audit(audit, expires_at)
    }
    fn replication_failure(
        &self,
        probe: &ProbeRecord,
    ) -> impl Future<Output = Result<Option<String>, LedgerError>> + Send {
        (**self).replication_failure(probe)
    }
    fn hand_over_redrive(
        &self,
        hand: &crate::redrive::HandOver,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).hand_over_redrive(hand)
    }
    fn daily_rollup(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
        day: NaiveDate,
    ) -> impl Future<Output = Result<Option<(DailyRollup, u64)>, LedgerError>> + Send {
        (**self).daily_rollup(source_bucket, destination_bucket, rule_id, day)
    }
    fn put_daily_rollup(
        &self,
        rollup: &DailyRollup,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).put_daily_rollup(rollup, expected, expires_at)
    }
    fn note_findings(
        &self,
        audit: &AuditRecord,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).note_findings(audit, expires_at)
    }
}
