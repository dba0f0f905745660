//! The ports a re-drive works through: S3 Batch Operations, the files a job leaves in S3, and
//! the ledger's re-drive records. SDK types stay in the adapters (`crate::aws`).

use super::files::JobObject;
use super::plan::JobRequest;
use super::record::RedriveRecord;
use crate::ledger::{LedgerError, ObjectRecord};
use chrono::{DateTime, Utc};
use std::future::Future;

/// A rule the canary saw recover, handed to the redrive function (automatic mode): a re-drive
/// of its source and destination is due if the guard holds. An item in the ledger rather than
/// an invocation or an event: it survives a failed run, costs the canary no new permission,
/// and the function's schedule picks it up (see README, "Re-drive").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOver {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    /// The probe that arrived.
    pub probe_at: DateTime<Utc>,
}

/// A batch job's status, as s3control names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    New,
    Preparing,
    Suspended,
    Ready,
    Active,
    Pausing,
    Paused,
    Complete,
    Cancelling,
    Cancelled,
    Failing,
    Failed,
    /// A status this version does not know: followed until it is one it knows.
    Other(String),
}

impl JobStatus {
    pub fn parse(text: &str) -> Self {
        match text {
            "New" => JobStatus::New,
            "Preparing" => JobStatus::Preparing,
            "Suspended" => JobStatus::Suspended,
            "Ready" => JobStatus::Ready,
            "Active" => JobStatus::Active,
            "Pausing" => JobStatus::Pausing,
            "Paused" => JobStatus::Paused,
            "Complete" => JobStatus::Complete,
            "Cancelling" => JobStatus::Cancelling,
            "Cancelled" => JobStatus::Cancelled,
            "Failing" => JobStatus::Failing,
            "Failed" => JobStatus::Failed,
            other => JobStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::New => "New",
            JobStatus::Preparing => "Preparing",
            JobStatus::Suspended => "Suspended",
            JobStatus::Ready => "Ready",
            JobStatus::Active => "Active",
            JobStatus::Pausing => "Pausing",
            JobStatus::Paused => "Paused",
            JobStatus::Complete => "Complete",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Cancelled => "Cancelled",
            JobStatus::Failing => "Failing",
            JobStatus::Failed => "Failed",
            JobStatus::Other(other) => other,
        }
    }

    /// No further change: the job's outcome can be read.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Complete | JobStatus::Cancelled | JobStatus::Failed
        )
    }
}

/// What `DescribeJob` says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub status: JobStatus,
    /// `FailureReasons` (code: reason), for a failed job.
    pub failure_reasons: Vec<String>,
    /// Where the generated manifest's `manifest.json` is (bucket, key), once generated.
    pub manifest: Option<(String, String)>,
    pub tasks_total: u64,
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsError {
    /// Throttling, timeouts, 5xx: a later try may succeed.
    #[error("S3 Batch Operations {operation} failed and may succeed on retry: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
    },
    /// Access denied, a role that cannot be passed, an invalid request: someone must fix it.
    #[error("S3 Batch Operations {operation} was refused: {detail}")]
    Refused {
        operation: &'static str,
        detail: String,
    },
    /// The job is not there (wrong account or region, or 90 days after it ended).
    #[error("batch job {job_id} not found")]
    NoSuchJob { job_id: String },
}

impl JobsError {
    pub fn retryable(&self) -> bool {
        matches!(self, JobsError::Unavailable { .. })
    }
}

/// S3 Batch Operations (s3control).
pub trait BatchJobs: Send + Sync {
    /// Create the job (or, for a token S3 has seen, answer the job it created): its id.
    fn create_job(
        &self,
        request: &JobRequest,
    ) -> impl Future<Output = Result<String, JobsError>> + Send;

    fn describe_job(
        &self,
        account_id: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<JobState, JobsError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    #[error("reading s3://{bucket}/{key} failed and may succeed on retry: {detail}")]
    Unavailable {
        bucket: String,
        key: String,
        detail: String,
    },
    #[error("reading s3://{bucket}/{key} was refused: {detail}")]
    Refused {
        bucket: String,
        key: String,
        detail: String,
    },
}

/// The objects a job writes (its manifest and report), read back.
pub trait JobFiles: Send + Sync {
    /// The object's bytes; `None` when it is not there (yet).
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, FilesError>> + Send;
}

/// A re-drive record as stored, with the revision that guards its next write.
pub type StoredRedrive = (RedriveRecord, u64);

/// The ledger's re-drive records and the object records a finished job settles.
pub trait RedriveStore: Send + Sync {
    /// The source's current (latest) re-drive.
    fn current(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Option<StoredRedrive>, LedgerError>> + Send;

    /// Write the source's current re-drive if it is still at `expected` (`None`: there is
    /// none); `false` when someone else wrote it since. A record not finished is listed by
    /// [`Self::open`] until a write finishes it.
    fn put_current(
        &self,
        record: &RedriveRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Re-drives not finished, every source (a small partition: work in flight, not history).
    fn open(&self) -> impl Future<Output = Result<Vec<StoredRedrive>, LedgerError>> + Send;

    /// What the canary handed over, oldest first (a small partition: removed once handled).
    fn handed_over(&self) -> impl Future<Output = Result<Vec<HandOver>, LedgerError>> + Send;

    /// Remove a hand-over once handled (unless a newer one replaced it).
    fn drop_hand_over(
        &self,
        hand: &HandOver,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The object records of these versions for this destination (those the ledger has).
    fn object_records(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        objects: &[JobObject],
    ) -> impl Future<Output = Result<Vec<(ObjectRecord, u64)>, LedgerError>> + Send;
}
