//! Re-drive: S3 never retries a `FAILED` replication; a re-drive is one S3 Batch Replication job
//! (s3control `CreateJob`, operation `S3ReplicateObject`, a manifest generated from the source's
//! `FAILED` versions) that gets the replica its missing objects back, followed to its end, its
//! report applied to the ledger: versions replicated leave the backlog (their records say by which
//! job and when), versions still failing keep their place with the task's failure code, counts
//! move, and one notice says how it went.
//!
//! Layout: `plan` (scope, the guard's evidence, the job request, cost, caveats), `record` (the
//! ledger's current re-drive per source), `files` (the manifest and report formats), `ports`
//! (Batch Operations, job files, the re-drive store), `settle` (a finished job into the ledger),
//! this file the service the `replmon redrive` command and the redrive function share.

pub mod files;
mod handler;
pub mod plan;
pub mod ports;
pub mod record;
pub mod render;
mod settle;
pub mod trigger;

pub use handler::HandlerError;
pub use plan::{Evidence, JobRequest, Scope};
pub use ports::{BatchJobs, HandOver, JobFiles, JobState, JobStatus, JobsError, RedriveStore};
pub use record::{RedriveRecord, RedriveState, TaskFailures};

use crate::clock::Clock;
use crate::delivery::page::{Notifier, NotifyError};
use crate::incident::Incident;
use crate::ledger::{Ledger, LedgerError};
use crate::status::LedgerReader;
use chrono::{DateTime, Utc};
use ports::{FilesError, StoredRedrive};

/// Settings of re-drives (README, "Re-drive").
#[derive(Debug, Clone, PartialEq)]
pub struct RedriveSettings {
    /// The role Batch Operations assumes (`REPLMON_REDRIVE_ROLE_ARN`).
    pub role_arn: String,
    /// Bucket (of the source's region) for generated manifests and completion reports
    /// (`REPLMON_REDRIVE_REPORT_BUCKET`).
    pub report_bucket: String,
    pub report_prefix: String,
    pub priority: i32,
    /// S3 Batch Operations' fee per job, USD (`REPLMON_REDRIVE_JOB_FEE_USD`).
    pub job_fee_usd: f64,
    /// Its fee per object version processed, USD (`REPLMON_REDRIVE_OBJECT_FEE_USD`).
    pub per_object_fee_usd: f64,
    /// Ledger records expire this long after their last write.
    pub ledger_ttl: chrono::Duration,
}

impl Default for RedriveSettings {
    fn default() -> Self {
        RedriveSettings {
            role_arn: String::new(),
            report_bucket: String::new(),
            report_prefix: "replmon-redrive".to_owned(),
            priority: 10,
            // S3 pricing page, Batch Operations: $0.25 per job, $1.00 per million objects.
            job_fee_usd: 0.25,
            per_object_fee_usd: 0.000_001,
            ledger_ttl: chrono::Duration::days(90),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The job's files are not what AWS documents: the re-drive stays open, nothing is marked.
    #[error("the job's files cannot be read: {0}")]
    BadFile(#[from] files::FileError),
    #[error("nothing to re-drive for {0}: no open FAILED incident with objects missing")]
    NothingToDo(String),
    /// The guard: the cause is not shown to be cleared.
    #[error("the cause is not shown to be cleared ({}); fix it, wait for a canary probe to arrive, or use --force", .0.join("; "))]
    NotCleared(Vec<String>),
    #[error("a re-drive of {source_bucket} is already {state} (job {job}); wait for it to finish")]
    AlreadyRunning {
        source_bucket: String,
        state: String,
        job: String,
    },
    #[error("the re-drive record of {0} changed while this ran; run it again")]
    Raced(String),
    /// The job completed but its report is not readable yet: settled on a later look.
    #[error("the report of job {0} is not there yet; the re-drive is settled on a later look")]
    ReportPending(String),
}

impl RedriveError {
    /// Whether the same request may succeed later without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            RedriveError::Ledger(e) => e.retryable(),
            RedriveError::Jobs(e) => e.retryable(),
            RedriveError::Files(FilesError::Unavailable { .. }) => true,
            RedriveError::Notify(e) => e.retryable(),
            RedriveError::Raced(_) | RedriveError::ReportPending(_) => true,
            _ => false,
        }
    }
}

/// A re-drive ready to start, or to print (`--dry-run`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scope: Scope,
    /// Open `FAILED` incidents in scope with objects missing, each with the guard's evidence.
    pub incidents: Vec<(Incident, Evidence)>,
    /// Object versions the ledger lists as missing for them.
    pub versions: u64,
    pub request: JobRequest,
    pub estimated_cost_usd: f64,
    pub caveats: Vec<&'static str>,
    /// The source's current re-drive, if one is still running.
    pub running: Option<RedriveRecord>,
    /// The attempt this plan would be.
    pub attempt: u32,
}

impl Plan {
    /// Reasons the guard refuses (empty: every incident's cause is shown cleared).
    pub fn not_cleared(&self) -> Vec<String> {
        self.incidents
            .iter()
            .filter_map(|(incident, evidence)| match evidence {
                Evidence::Cleared { .. } => None,
                Evidence::NotShown(why) => Some(format!("{}: {why}", incident.key.id())),
            })
            .collect()
    }
}

/// What following a re-drive found.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    /// Still running (its job's status).
    Running(String),
    /// Finished now or before: the record as it ends.
    Finished(Box<RedriveRecord>),
}

/// The service: plan, start, follow, sweep.
pub struct Redrives<S, J, F, N, C> {
    pub store: S,
    pub jobs: J,
    pub files: F,
    pub notifier: N,
    pub clock: C,
    pub settings: RedriveSettings,
}

impl<S, J, F, N, C> Redrives<S, J, F, N, C>
where
    S: RedriveStore + Ledger + LedgerReader,
    J: BatchJobs,
    F: JobFiles,
    N: Notifier,
    C: Clock,
{
    /// The plan for a scope, from the ledger: incidents, evidence, versions, the job request.
    pub async fn plan(&self, scope: &Scope, account_id: &str) -> Result<Plan, RedriveError> {
        let incidents = self.store.incidents(&scope.source_bucket).await?;
        let health = self.store.rule_health(&scope.source_bucket).await?;
        let current = self.store.current(&scope.source_bucket).await?;
        let in_scope: Vec<(Incident, Evidence)> = incidents
            .into_iter()
            .filter(|i| scope.covers(i) && i.backlog_count > 0)
            .map(|i| {
                let evidence = plan::evidence(&i, &health);
                (i, evidence)
            })
            .collect();
        let versions = in_scope
            .iter()
            .map(|(i, _)| u64::try_from(i.backlog_count).unwrap_or(0))
            .sum();
        let (running, attempt) = match &current {
            Some((record, _)) if record.state.is_open() => (Some(record.clone()), record.attempt),
            Some((record, _)) => (None, record.attempt + 1),
            None => (None, 1),
        };
        let refs: Vec<&Incident> = in_scope.iter().map(|(i, _)| i).collect();
        let request = plan::job_request(&self.settings, account_id, scope, &refs, attempt);
        Ok(Plan {
            scope: scope.clone(),
            estimated_cost_usd: plan::estimated_cost(&self.settings, versions),
            caveats: plan::caveats(),
            incidents: in_scope,
            versions,
            request,
            running,
            attempt,
        })
    }

    /// Start the plan's job: claim the source's re-drive, create the job (its token makes a
    /// retried request answer the same job), record it. `force` skips the guard.
    pub async fn start(
        &self,
        plan: &Plan,
        force: bool,
        requested_by: &str,
    ) -> Result<RedriveRecord, RedriveError> {
        if plan.incidents.is_empty() {
            return Err(RedriveError::NothingToDo(plan.scope.describe()));
        }
        let refused = plan.not_cleared();
        if !refused.is_empty() && !force {
            return Err(RedriveError::NotCleared(refused));
        }
        let source = &plan.scope.source_bucket;
        let current = self.store.current(source).await?;
        let (record, revision) = match current {
            // A claim of ours (same token) that never recorded its job: carry on with it.
            Some((record, revision))
                if record.state == RedriveState::Starting && record.token == plan.request.token =>
            {
                (record, revision)
            }
            Some((record, _)) if record.state.is_open() => {
                return Err(RedriveError::AlreadyRunning {
                    source_bucket: source.clone(),
                    state: format!("{:?}", record.state).to_lowercase(),
                    job: record.job_id.unwrap_or_else(|| "not created yet".into()),
                })
            }
            other => {
                let expected = other.as_ref().map(|(_, revision)| *revision);
                let record = RedriveRecord {
                    source_bucket: source.clone(),
                    destination_bucket: plan.scope.destination_bucket.clone(),
                    attempt: plan.attempt,
                    token: plan.request.token.clone(),
                    account_id: plan.request.account_id.clone(),
                    job_id: None,
                    state: RedriveState::Starting,
                    job_status: None,
                    requested_by: requested_by.to_owned(),
                    forced: force && !refused.is_empty(),
                    requested_at: self.clock.now(),
                    incidents: plan.incidents.iter().map(|(i, _)| i.key.id()).collect(),
                    finished_at: None,
                    versions_in_job: 0,
                    replicated: 0,
                    still_failing: Vec::new(),
                    job_failures: Vec::new(),
                    notice_sent: false,
                    notice_claimed_at: None,
                };
                if !self.store.put_current(&record, expected).await? {
                    return Err(RedriveError::Raced(source.clone()));
                }
                (record, expected.map_or(1, |r| r + 1))
            }
        };
        self.create_and_record(record, revision, &plan.request)
            .await
    }

    /// Create the claimed re-drive's job (again, with its token, if it may exist) and record it.
    async fn create_and_record(
        &self,
        mut record: RedriveRecord,
        revision: u64,
        request: &JobRequest,
    ) -> Result<RedriveRecord, RedriveError> {
        let job_id = self.jobs.create_job(request).await?;
        record.job_id = Some(job_id.clone());
        record.state = RedriveState::Running;
        record.job_status = Some(JobStatus::New.as_str().to_owned());
        if !self.store.put_current(&record, Some(revision)).await? {
            // Someone recorded it first (the same job: the token is the same).
            if let Some((theirs, _)) = self.store.current(&record.source_bucket).await? {
                if theirs.job_id.as_deref() == Some(job_id.as_str()) {
                    return Ok(theirs);
                }
            }
            return Err(RedriveError::Raced(record.source_bucket.clone()));
        }
        tracing::info!(source_bucket = %record.source_bucket, job_id = %job_id, attempt = record.attempt, "re-drive started");
        Ok(record)
    }

    /// Look at a source's open re-drive: its job's status, and when it ended, settle it.
    pub async fn follow(&self, stored: StoredRedrive) -> Result<Followed, RedriveError> {
        let (record, revision) = stored;
        if !record.state.is_open() {
            return self.notify_finished(record, revision).await;
        }
        let Some(job_id) = record.job_id.clone() else {
            // Claimed, job never recorded (a crash after CreateJob or before it): ask again
            // with the same token, which answers the job if it exists.
            let request = self.request_of(&record).await?;
            let record = self.create_and_record(record, revision, &request).await?;
            return Ok(Followed::Running(record.job_status.unwrap_or_default()));
        };
        let state = self.jobs.describe_job(&record.account_id, &job_id).await?;
        if !state.status.is_terminal() {
            if record.job_status.as_deref() != Some(state.status.as_str()) {
                let mut updated = record.clone();
                updated.job_status = Some(state.status.as_str().to_owned());
                // Losing this race only loses a status shown in `replmon status`.
                let _ = self.store.put_current(&updated, Some(revision)).await?;
            }
            return Ok(Followed::Running(state.status.as_str().to_owned()));
        }
        let now = self.clock.now();
        let mut finished = record.clone();
        finished.job_status = Some(state.status.as_str().to_owned());
        finished.finished_at = Some(now);
        if state.status == JobStatus::Complete {
            settle::settle(self, &mut finished, &state, now).await?;
            finished.state = RedriveState::Finished;
        } else {
            finished.state = RedriveState::Failed;
            finished.job_failures = state.failure_reasons.clone();
        }
        if !self.store.put_current(&finished, Some(revision)).await? {
            return Err(RedriveError::Raced(finished.source_bucket));
        }
        self.notify_finished(finished, revision + 1).await
    }

    /// The request of a claimed re-drive, rebuilt from its record (same token).
    async fn request_of(&self, record: &RedriveRecord) -> Result<JobRequest, RedriveError> {
        let scope = Scope {
            source_bucket: record.source_bucket.clone(),
            destination_bucket: record.destination_bucket.clone(),
        };
        let incidents = self.store.incidents(&record.source_bucket).await?;
        let mine: Vec<&Incident> = incidents
            .iter()
            .filter(|i| record.incidents.contains(&i.key.id()))
            .collect();
        let mut request = plan::job_request(
            &self.settings,
            &record.account_id,
            &scope,
            &mine,
            record.attempt,
        );
        request.token = record.token.clone();
        Ok(request)
    }

    /// Every open re-drive looked at once (the scheduled sweep: events may not arrive).
    pub async fn sweep(&self) -> Vec<(String, Result<Followed, RedriveError>)> {
        let open = match self.store.open().await {
            Ok(open) => open,
            Err(error) => return vec![("*".to_owned(), Err(error.into()))],
        };
        let mut results = Vec::new();
        for stored in open {
            let source = stored.0.source_bucket.clone();
            results.push((source, self.follow(stored).await));
        }
        results
    }

    /// A Batch Operations job status event: follow the re-drive whose job it is (events for
    /// other jobs, or for re-drives already settled, are acknowledged).
    pub async fn on_job_event(&self, job_id: &str) -> Result<Option<Followed>, RedriveError> {
        let open = self.store.open().await?;
        match open
            .into_iter()
            .find(|(r, _)| r.job_id.as_deref() == Some(job_id))
        {
            Some(stored) => self.follow(stored).await.map(Some),
            None => Ok(None),
        }
    }

    /// Send the finish notice once (claim, publish, confirm).
    async fn notify_finished(
        &self,
        record: RedriveRecord,
        revision: u64,
    ) -> Result<Followed, RedriveError> {
        if record.notice_sent {
            return Ok(Followed::Finished(Box::new(record)));
        }
        let now = self.clock.now();
        let outbox = settle::Notices {
            store: &self.store,
            now,
            lease: chrono::Duration::minutes(2),
        };
        let page = settle::notice(&record);
        match crate::delivery::outbox::Outbox::claim(&outbox, &(record.clone(), revision)).await? {
            crate::delivery::outbox::Claimed::Taken(claim) => {
                let delivered = crate::delivery::outbox::deliver(
                    &outbox,
                    &self.notifier,
                    &claim,
                    std::slice::from_ref(&page),
                    &format!("re-drive of {}", record.source_bucket),
                )
                .await;
                if let Some(error) = delivered.error {
                    return Err(error.into());
                }
                let mut sent = claim.0;
                sent.notice_sent = true;
                Ok(Followed::Finished(Box::new(sent)))
            }
            // Sent by another look, or being sent right now.
            crate::delivery::outbox::Claimed::Changed(_)
            | crate::delivery::outbox::Claimed::Held(_) => Ok(Followed::Finished(Box::new(record))),
        }
    }
}

/// When a record's writes expire.
pub(crate) fn expires_at(settings: &RedriveSettings, now: DateTime<Utc>) -> DateTime<Utc> {
    now + settings.ledger_ttl
}

#[cfg(test)]
mod tests;
