//! A completed job into the ledger: the versions its manifest lists, less those its report lists
//! as failed, leave the backlog; the failed ones keep their place with the task's failure code.
//! Nothing is marked until the whole report is read, so an object the report lists as failed is
//! never marked replicated. Each record moves once (its `redrive_job` and revision guard it), so
//! a second look at the same job changes nothing and counts the same.

use super::files::{self, FailedTask, JobObject};
use super::ports::{JobState, StoredRedrive};
use super::record::{RedriveRecord, TaskFailures};
use super::{BatchJobs, JobFiles, RedriveError, RedriveStore, Redrives};
use crate::clock::Clock;
use crate::delivery::outbox::{Claimed, Outbox};
use crate::delivery::page::{Notifier, Page, Urgency};
use crate::delivery::text::untrusted_brief;
use crate::incident::{IncidentCause, IncidentKey};
use crate::ledger::{
    commit_token, Commit, CommitOutcome, IncidentDelta, IncidentMode, Ledger, LedgerError,
    ObjectRecord, ObjectStatus, RedriveMark, Write,
};
use crate::severity::Severity;
use crate::status::LedgerReader;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Object records per commit (each with its incident's count).
const CHUNK: usize = 40;
/// Rounds of a chunk when records change under it.
const ROUNDS: u32 = 4;

pub(super) async fn settle<S, J, F, N, C>(
    redrives: &Redrives<S, J, F, N, C>,
    record: &mut RedriveRecord,
    state: &JobState,
    now: DateTime<Utc>,
) -> Result<(), RedriveError>
where
    S: RedriveStore + Ledger + LedgerReader,
    J: BatchJobs,
    F: JobFiles,
    N: Notifier,
    C: Clock,
{
    let job_id = record.job_id.clone().unwrap_or_default();
    let in_job = if state.tasks_total == 0 {
        Vec::new()
    } else {
        let Some((bucket, key)) = &state.manifest else {
            return Err(RedriveError::ReportPending(job_id));
        };
        manifest(&redrives.files, bucket, key, &job_id).await?
    };
    let failed = if state.tasks_total == 0 {
        Vec::new()
    } else {
        report(redrives, &record.source_bucket, &job_id).await?
    };
    let failed: HashMap<&JobObject, &FailedTask> = failed.iter().map(|t| (&t.object, t)).collect();
    let source = record.source_bucket.clone();
    let ours: Vec<JobObject> = in_job
        .iter()
        .filter(|o| o.bucket == source)
        .cloned()
        .collect();
    record.versions_in_job = ours.len() as u64;
    let mut replicated = 0u64;
    let mut still: BTreeMap<String, TaskFailures> = BTreeMap::new();
    for key in record.incident_keys() {
        let IncidentCause::Failure(code) = &key.cause else {
            continue;
        };
        let membership = format!("FAILED:{code}#{}", key.rule_id);
        for chunk in ours.chunks(CHUNK) {
            let records =
                settle_chunk(redrives, &key, &membership, chunk, &failed, &job_id, now).await?;
            for record in records {
                if record.redrive_job() != Some(job_id.as_str()) {
                    continue;
                }
                if record.redriven_at().is_some() {
                    replicated += 1;
                } else if let Some(code) = record.redrive_failure() {
                    let entry = still
                        .entry(code.to_owned())
                        .or_insert_with(|| TaskFailures {
                            code: code.to_owned(),
                            count: 0,
                            example: String::new(),
                        });
                    entry.count += 1;
                    if entry.example.is_empty() {
                        let object = JobObject {
                            bucket: record.source_bucket.clone(),
                            key: record.key.clone(),
                            version_id: record.version_id.clone(),
                        };
                        entry.example = failed
                            .get(&object)
                            .map(|t| t.message.clone())
                            .unwrap_or_default();
                    }
                }
            }
        }
    }
    record.replicated = replicated;
    record.still_failing = still.into_values().collect();
    Ok(())
}

/// The versions a generated manifest lists.
async fn manifest<F: JobFiles>(
    files: &F,
    bucket: &str,
    key: &str,
    job_id: &str,
) -> Result<Vec<JobObject>, RedriveError> {
    let Some(bytes) = files.get(bucket, key).await? else {
        return Err(RedriveError::ReportPending(job_id.to_owned()));
    };
    let name = format!("s3://{bucket}/{key}");
    let text = files::file_text(&name, &bytes)?;
    let mut objects = Vec::new();
    for data in files::manifest_data_files(&name, &text)? {
        let Some(bytes) = files.get(bucket, &data).await? else {
            return Err(RedriveError::ReportPending(job_id.to_owned()));
        };
        let name = format!("s3://{bucket}/{data}");
        objects.extend(files::manifest_objects(
            &name,
            &files::file_text(&name, &bytes)?,
        )?);
    }
    Ok(objects)
}

/// Every failed task of the job's completion report (under the prefix its request named:
/// [`super::plan::job_request`]).
async fn report<S, J, F, N, C>(
    redrives: &Redrives<S, J, F, N, C>,
    source_bucket: &str,
    job_id: &str,
) -> Result<Vec<FailedTask>, RedriveError>
where
    F: JobFiles,
{
    let bucket = &redrives.settings.report_bucket;
    let key = format!(
        "{}/job-{job_id}/manifest.json",
        super::plan::report_prefix(&redrives.settings, source_bucket)
    );
    let Some(bytes) = redrives.files.get(bucket, &key).await? else {
        return Err(RedriveError::ReportPending(job_id.to_owned()));
    };
    let name = format!("s3://{bucket}/{key}");
    let text = files::file_text(&name, &bytes)?;
    let mut failed = Vec::new();
    for file in files::report_files(&name, &text)?
        .into_iter()
        .filter(|f| f.failed)
    {
        let Some(bytes) = redrives.files.get(&file.bucket, &file.key).await? else {
            return Err(RedriveError::ReportPending(job_id.to_owned()));
        };
        let name = format!("s3://{}/{}", file.bucket, file.key);
        failed.extend(files::failed_tasks(
            &name,
            &files::file_text(&name, &bytes)?,
        )?);
    }
    Ok(failed)
}

/// Settle one chunk of versions for one incident: read their records, move the ones still
/// missing, commit with the counts; answer the records as they end.
async fn settle_chunk<S, J, F, N, C>(
    redrives: &Redrives<S, J, F, N, C>,
    key: &IncidentKey,
    membership: &str,
    chunk: &[JobObject],
    failed: &HashMap<&JobObject, &FailedTask>,
    job_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<ObjectRecord>, RedriveError>
where
    S: RedriveStore + Ledger + LedgerReader,
{
    for _ in 0..ROUNDS {
        let records = redrives
            .store
            .object_records(&key.source_bucket, &key.destination_bucket, chunk)
            .await?;
        let mut writes = Vec::new();
        let mut after = Vec::new();
        let mut backlog: i64 = 0;
        for (record, revision) in records {
            let mine = record.counted_in.contains(membership)
                && record.status() == ObjectStatus::Failed
                && record.redrive_job() != Some(job_id);
            if !mine {
                after.push(record);
                continue;
            }
            let object = JobObject {
                bucket: record.source_bucket.clone(),
                key: record.key.clone(),
                version_id: record.version_id.clone(),
            };
            let mut moved = record.clone();
            let mark = match failed.get(&object) {
                Some(task) => RedriveMark {
                    job: job_id.to_owned(),
                    redriven_at: None,
                    redrive_failure: Some(failure_code(task)),
                },
                None => {
                    backlog -= 1;
                    RedriveMark {
                        job: job_id.to_owned(),
                        redriven_at: Some(now),
                        redrive_failure: None,
                    }
                }
            };
            moved.redrive = Some(Box::new(mark));
            after.push(moved.clone());
            writes.push(Write::Object {
                record: Arc::new(moved),
                expected: Some(revision),
            });
        }
        if writes.is_empty() {
            return Ok(after);
        }
        if backlog != 0 {
            writes.push(Write::Incident {
                key: key.clone(),
                delta: IncidentDelta {
                    backlog,
                    ..IncidentDelta::default()
                },
                mode: IncidentMode::Add {
                    lower_first: false,
                    raise_last: false,
                },
            });
        }
        let commit = Commit {
            token: commit_token(),
            writes,
            now,
            expires_at: super::expires_at(&redrives.settings, now),
        };
        match redrives.store.commit(&commit).await? {
            CommitOutcome::Committed => return Ok(after),
            // A record or the incident changed since it was read: read again.
            CommitOutcome::Cancelled { .. } => continue,
        }
    }
    Err(RedriveError::Ledger(LedgerError::Unavailable {
        operation: "re-drive commit",
        detail: format!("records of {} kept changing", key.id()),
    }))
}

/// The failure code a failed task is filed under: the replication failure reason when the
/// task's message is one (S3 Batch Replication reports it there), else its error code.
fn failure_code(task: &FailedTask) -> String {
    let message = task.message.trim();
    match crate::catalog::lookup(message) {
        Some(reason) => reason.code.to_owned(),
        None => task.error_code.clone(),
    }
}

/// The one notice of a finished re-drive.
pub(super) fn notice(record: &RedriveRecord) -> Page {
    let scope = format!(
        "{} -> {}",
        record.source_bucket,
        record
            .destination_bucket
            .as_deref()
            .unwrap_or("all destinations")
    );
    let job = record.job_id.as_deref().unwrap_or("?");
    let (severity, urgency, subject, mut body) = if record.state == super::RedriveState::Failed {
        (
            Severity::High,
            Urgency::Page,
            format!("re-drive of {scope} did not finish"),
            format!(
                "The S3 Batch Replication job {job} ended {}; nothing was replicated by it.\nWhy: {}\nFix: check the job's role (trusted by batchoperations.s3.amazonaws.com, s3:InitiateReplication on the source's objects, s3:GetReplicationConfiguration and s3:PutInventoryConfiguration on the source, write access to the report bucket) and run replmon redrive again.",
                record.job_status.as_deref().unwrap_or("unsuccessfully"),
                if record.job_failures.is_empty() {
                    "S3 gave no reason".to_owned()
                } else {
                    record
                        .job_failures
                        .iter()
                        .map(|f| untrusted_brief(f, 300))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            ),
        )
    } else {
        let total = record.replicated + record.still_failing_count();
        let mut body = format!(
            "re-drive of {scope} finished: {} of {total} object versions replicated",
            record.replicated
        );
        if record.still_failing_count() > 0 {
            body.push_str(&format!("; {} still failing", record.still_failing_count()));
        }
        body.push_str(&format!(".\nJob: {job} (attempt {}).", record.attempt));
        for failure in &record.still_failing {
            let explained = crate::catalog::explain(&failure.code);
            body.push_str(&format!(
                "\nStill failing: {} x {} ({}). Fix: {}{}",
                failure.count,
                untrusted_brief(&failure.code, 80),
                explained.meaning,
                explained.fix,
                if failure.example.is_empty() {
                    String::new()
                } else {
                    format!(" Report: {}", untrusted_brief(&failure.example, 200))
                }
            ));
        }
        let severity = if record.still_failing_count() > 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        (
            severity,
            Urgency::Notice,
            format!(
                "re-drive of {scope}: {} of {total} replicated",
                record.replicated
            ),
            body,
        )
    };
    if record.forced {
        body.push_str("\nStarted with --force: the canary had not shown the cause cleared.");
    }
    Page::new(severity, urgency, "redrive", &subject, &body)
        .with_source_bucket(&record.source_bucket)
}

/// The re-drive's notice as an outbox: claimed in the current record (a lease), confirmed by
/// marking it sent.
pub(super) struct Notices<'a, S> {
    pub store: &'a S,
    pub now: DateTime<Utc>,
    pub lease: chrono::Duration,
}

impl<S: RedriveStore> Outbox for Notices<'_, S> {
    type Owed = StoredRedrive;
    type Claim = StoredRedrive;

    async fn claim(
        &self,
        owed: &StoredRedrive,
    ) -> Result<Claimed<StoredRedrive, StoredRedrive>, LedgerError> {
        let (record, revision) = owed;
        if record.notice_sent {
            return Ok(Claimed::Changed(None));
        }
        if record
            .notice_claimed_at
            .is_some_and(|at| self.now - at < self.lease)
        {
            return Ok(Claimed::Held(owed.clone()));
        }
        let mut claimed = record.clone();
        claimed.notice_claimed_at = Some(self.now);
        if self.store.put_current(&claimed, Some(*revision)).await? {
            return Ok(Claimed::Taken((claimed, revision + 1)));
        }
        Ok(Claimed::Changed(
            self.store.current(&record.source_bucket).await?,
        ))
    }

    async fn confirm(&self, claim: &StoredRedrive, _sent: usize) -> Result<(), LedgerError> {
        let (record, revision) = claim;
        let mut sent = record.clone();
        sent.notice_sent = true;
        sent.notice_claimed_at = None;
        self.store.put_current(&sent, Some(*revision)).await?;
        Ok(())
    }

    async fn release(&self, claim: &StoredRedrive) -> Result<(), LedgerError> {
        let (record, revision) = claim;
        let mut released = record.clone();
        released.notice_claimed_at = None;
        self.store.put_current(&released, Some(*revision)).await?;
        Ok(())
    }
}
