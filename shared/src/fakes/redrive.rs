//! In-memory re-drive ports: the ledger's re-drive records, S3 Batch Operations (idempotent by
//! token, as s3control is), and the files a job leaves.

use super::{object_id, InMemoryLedger};
use crate::ledger::{LedgerError, ObjectRecord};
use crate::redrive::files::JobObject;
use crate::redrive::ports::{FilesError, StoredRedrive};
use crate::redrive::{
    BatchJobs, HandOver, JobFiles, JobRequest, JobState, JobStatus, JobsError, RedriveRecord,
    RedriveStore,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

impl InMemoryLedger {
    /// What the canary handed to the redrive function, oldest first.
    pub fn hand_overs(&self) -> Vec<HandOver> {
        let mut handed: Vec<HandOver> = self.lock().hand_overs.values().cloned().collect();
        handed.sort_by_key(|h| h.probe_at);
        handed
    }
}

impl RedriveStore for InMemoryLedger {
    async fn current(&self, source_bucket: &str) -> Result<Option<StoredRedrive>, LedgerError> {
        let found = self.lock().redrives.get(source_bucket).cloned();
        self.read(u64::from(found.is_some()));
        Ok(found)
    }

    async fn put_current(
        &self,
        record: &RedriveRecord,
        expected: Option<u64>,
    ) -> Result<bool, LedgerError> {
        let mut state = self.lock();
        let stored = state
            .redrives
            .get(&record.source_bucket)
            .map(|(_, revision)| *revision);
        if stored != expected {
            return Ok(false);
        }
        if !record.state.is_open() {
            state.redrive_history.insert(
                (record.source_bucket.clone(), record.attempt),
                record.clone(),
            );
        }
        state.redrives.insert(
            record.source_bucket.clone(),
            (record.clone(), expected.map_or(1, |r| r + 1)),
        );
        Ok(true)
    }

    async fn open(&self) -> Result<Vec<StoredRedrive>, LedgerError> {
        let open: Vec<StoredRedrive> = self
            .lock()
            .redrives
            .values()
            .filter(|(record, _)| record.state.is_open())
            .cloned()
            .collect();
        self.read(open.len() as u64);
        Ok(open)
    }

    async fn handed_over(&self) -> Result<Vec<HandOver>, LedgerError> {
        let mut handed: Vec<HandOver> = self.lock().hand_overs.values().cloned().collect();
        handed.sort_by_key(|h| h.probe_at);
        Ok(handed)
    }

    async fn drop_hand_over(&self, hand: &HandOver) -> Result<(), LedgerError> {
        let mut state = self.lock();
        let key = hand_over_key(hand);
        if state.hand_overs.get(&key) == Some(hand) {
            state.hand_overs.remove(&key);
        }
        Ok(())
    }

    async fn object_records(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        objects: &[JobObject],
    ) -> Result<Vec<(ObjectRecord, u64)>, LedgerError> {
        let state = self.lock();
        let found: Vec<(ObjectRecord, u64)> = objects
            .iter()
            .filter_map(|o| {
                let id = object_id(
                    source_bucket,
                    destination_bucket,
                    &o.key,
                    o.version_id.as_deref(),
                );
                state
                    .objects
                    .get(&id)
                    .map(|(record, revision)| ((**record).clone(), *revision))
            })
            .collect();
        drop(state);
        self.read(found.len() as u64);
        Ok(found)
    }
}

/// S3 Batch Operations in memory: `CreateJob` answers the same job for a token it has seen;
/// each job's state is what the test sets.
#[derive(Debug, Default)]
pub struct FakeBatchJobs {
    jobs: Mutex<FakeJobs>,
    /// The next N `CreateJob` calls create the job and then fail (the answer is lost).
    pub lose_creates: AtomicUsize,
}

#[derive(Debug, Default)]
struct FakeJobs {
    by_token: HashMap<String, String>,
    states: HashMap<String, JobState>,
    requests: Vec<JobRequest>,
    calls: usize,
}

impl FakeBatchJobs {
    /// Jobs created (not `CreateJob` calls).
    pub fn requests(&self) -> Vec<JobRequest> {
        self.lock().requests.clone()
    }

    pub fn create_calls(&self) -> usize {
        self.lock().calls
    }

    pub fn set_state(&self, job_id: &str, state: JobState) {
        self.lock().states.insert(job_id.to_owned(), state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeJobs> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BatchJobs for FakeBatchJobs {
    async fn create_job(&self, request: &JobRequest) -> Result<String, JobsError> {
        let job_id = {
            let mut jobs = self.lock();
            jobs.calls += 1;
            match jobs.by_token.get(&request.token) {
                Some(id) => id.clone(),
                None => {
                    let id = format!("job-{}", jobs.requests.len() + 1);
                    jobs.by_token.insert(request.token.clone(), id.clone());
                    jobs.requests.push(request.clone());
                    jobs.states.insert(
                        id.clone(),
                        JobState {
                            status: JobStatus::New,
                            failure_reasons: Vec::new(),
                            manifest: None,
                            tasks_total: 0,
                            tasks_succeeded: 0,
                            tasks_failed: 0,
                        },
                    );
                    id
                }
            }
        };
        if super::take_failure(&self.lose_creates) {
            return Err(JobsError::Unavailable {
                operation: "CreateJob",
                detail: "injected: the answer was lost".into(),
            });
        }
        Ok(job_id)
    }

    async fn describe_job(&self, _account_id: &str, job_id: &str) -> Result<JobState, JobsError> {
        self.lock()
            .states
            .get(job_id)
            .cloned()
            .ok_or_else(|| JobsError::NoSuchJob {
                job_id: job_id.to_owned(),
            })
    }
}

/// Objects in memory, by bucket and key.
#[derive(Debug, Default)]
pub struct FakeJobFiles {
    objects: Mutex<HashMap<(String, String), Vec<u8>>>,
    pub gets: AtomicUsize,
}

impl FakeJobFiles {
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((bucket.to_owned(), key.to_owned()), body.to_vec());
    }
}

impl JobFiles for FakeJobFiles {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, FilesError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned())
    }
}

pub(super) fn hand_over_key(hand: &HandOver) -> (String, String, String) {
    (
        hand.source_bucket.clone(),
        hand.destination_bucket.clone(),
        hand.rule_id.clone(),
    )
}
