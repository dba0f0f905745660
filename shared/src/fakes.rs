//! In-memory implementations of the ports, with the same semantics as the AWS adapters, for unit
//! tests and benchmarks. Failures can be injected to exercise retry paths.

use crate::alarm::monitor::{AlarmStore, BacklogCounter};
use crate::alarm::{AlarmMetric, AlarmRecord};
use crate::clock::Clock;
use crate::delivery::outbox::Claimed;
use crate::delivery::page::{Notifier, NotifyError, Page};
use crate::event::EventId;
use crate::incident::{Incident, IncidentKey};
use crate::ledger::{
    Commit, CommitOutcome, IncidentMode, Ledger, LedgerError, ObjectRecord, PageClaim, PageSent,
    StoredIncident, Verdict, Write,
};
use crate::metrics::{MetricsError, MetricsSource, Series};
use chrono::{DateTime, Duration, Utc};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod canary;
mod notification;
mod redrive;
mod report;
mod report_seed;
pub use report_seed::{resolved_probe, Expected, ReportSeed, SeededEvent, SEED_THRESHOLD_MS};
mod status;
pub use canary::{Arrival, FakeS3, ProbePut, RecordedMeasurement, RecordingProbeMetrics};
pub use notification::{thrice_shuffled, NotificationBuilder, SplitMix64};
pub use redrive::{FakeBatchJobs, FakeJobFiles};

/// Source, destination, key and version joined by NUL (which S3 names cannot hold in buckets).
type ObjectId = String;

/// A page claim's token and when it was taken.
type HeldClaim = (String, DateTime<Utc>);

#[derive(Debug, Default)]
struct LedgerState {
    /// Shared with the commit that wrote it (a storm's million records are not copied again);
    /// a rehash moves only the pointers.
    objects: HashMap<ObjectId, (Arc<ObjectRecord>, u64)>,
    /// Markers of not-tracked events, per incident.
    markers: HashMap<IncidentKey, HashSet<EventId>>,
    incidents: HashMap<IncidentKey, (Incident, Option<HeldClaim>)>,
    /// Tokens of the commits applied (DynamoDB remembers them ten minutes).
    tokens: HashSet<String>,
    alarms: HashMap<String, (AlarmRecord, u64)>,
    canary: canary::CanaryState,
    /// Current re-drive per source bucket, with its revision.
    redrives: HashMap<String, (crate::redrive::RedriveRecord, u64)>,
    /// Finished re-drives by source and attempt (the history `replmon report` lists).
    redrive_history: std::collections::BTreeMap<(String, u32), crate::redrive::RedriveRecord>,
    /// Rules the canary saw recover, by (source, destination, rule).
    hand_overs: HashMap<(String, String, String), crate::redrive::HandOver>,
}

/// The ledger in a mutex.
#[derive(Debug, Default)]
pub struct InMemoryLedger {
    state: Mutex<LedgerState>,
    /// The next N canary record writes fail as if DynamoDB were unavailable.
    pub fail_records: AtomicUsize,
    /// The next N commits fail as if DynamoDB were unavailable (nothing applied).
    pub fail_commits: AtomicUsize,
    /// The next N commits are applied, then fail as if the answer were lost on the way back.
    pub lose_commits: AtomicUsize,
    /// The next N commits meet another transaction on one of their items (nothing applied).
    pub busy_commits: AtomicUsize,
    /// The next N `confirm_page` calls fail.
    pub fail_confirms: AtomicUsize,
    /// The next N canary health writes fail.
    pub fail_health: AtomicUsize,
    /// The next N canary daily roll-up writes fail.
    pub fail_rollup: AtomicUsize,
    /// Items read, as DynamoDB would count them: one per item a get returns, one per item a
    /// query examines. Writes that return an item on a failed condition read nothing.
    pub items_read: AtomicU64,
}

fn take_failure(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn unavailable(operation: &'static str) -> LedgerError {
    LedgerError::Unavailable {
        operation,
        detail: "injected fault".into(),
    }
}

/// Source, destination, key and version, NUL-separated.
fn object_id(source: &str, destination: &str, key: &str, version: Option<&str>) -> ObjectId {
    let version = version.unwrap_or("\u{1}null");
    let mut id =
        String::with_capacity(source.len() + destination.len() + key.len() + version.len() + 3);
    for part in [source, destination, key] {
        id.push_str(part);
        id.push('\0');
    }
    id.push_str(version);
    id
}

impl InMemoryLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        // A panic while holding the lock only happens in a failing test; keep the data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self, items: u64) {
        self.items_read.fetch_add(items, Ordering::Relaxed);
    }

    pub fn objects(&self) -> Vec<ObjectRecord> {
        let mut objects: Vec<_> = self
            .lock()
            .objects
            .values()
            .map(|(record, _)| (**record).clone())
            .collect();
        objects.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
        objects
    }

    /// The keys of the alarm records stored, in order.
    pub fn alarm_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().alarms.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Incidents as stored, with their counters.
    pub fn incidents(&self) -> Vec<Incident> {
        let mut incidents: Vec<_> = self
            .lock()
            .incidents
            .values()
            .map(|(incident, _)| incident.clone())
            .collect();
        incidents.sort_by(|a, b| a.key.cmp(&b.key));
        incidents
    }

    /// Events and recoveries counted, all incidents together.
    pub fn event_count(&self) -> usize {
        self.lock()
            .incidents
            .values()
            .map(|(i, _)| (i.event_count + i.recovered_count) as usize)
            .sum()
    }
}

impl LedgerState {
    /// What a commit's write finds: whether its condition holds, and if not, what is stored.
    fn verdict(&self, write: &Write, id: Option<&ObjectId>) -> Verdict {
        match write {
            Write::Object { expected, .. } => {
                let stored = id.and_then(|id| self.objects.get(id));
                if stored.map(|(_, revision)| *revision) == *expected {
                    Verdict::Held
                } else {
                    Verdict::Object(
                        stored.map(|(record, revision)| ((**record).clone(), *revision)),
                    )
                }
            }
            Write::Marker { incident, event } => {
                if self
                    .markers
                    .get(incident)
                    .is_some_and(|ids| ids.contains(&event.id()))
                {
                    Verdict::MarkerExists
                } else {
                    Verdict::Held
                }
            }
            Write::Incident { key, delta, mode } => {
                let stored = self.incidents.get(key).map(|(incident, _)| incident);
                let holds = match (mode, stored) {
                    (IncidentMode::Create { .. }, stored) => stored.is_none(),
                    (IncidentMode::Add { .. }, None) => false,
                    (
                        IncidentMode::Add {
                            lower_first,
                            raise_last,
                        },
                        Some(stored),
                    ) => delta.span.is_none_or(|(first, last)| {
                        // As the DynamoDB adapter's conditions: each guess about the span holds.
                        let first_ok = stored.first_seen.is_none_or(|theirs| {
                            if *lower_first {
                                theirs >= first
                            } else {
                                theirs <= first
                            }
                        });
                        let last_ok = stored.last_seen.is_none_or(|theirs| {
                            if *raise_last {
                                theirs <= last
                            } else {
                                theirs >= last
                            }
                        });
                        first_ok && last_ok
                    }),
                };
                if holds {
                    Verdict::Held
                } else {
                    Verdict::Incident(stored.map(|incident| StoredIncident {
                        incident: incident.clone(),
                        migrated: true,
                    }))
                }
            }
        }
    }

    /// Apply a write whose condition held.
    fn apply(&mut self, write: &Write, id: Option<ObjectId>, now: DateTime<Utc>) {
        match write {
            Write::Object { record, expected } => {
                let revision = expected.map_or(1, |r| r + 1);
                let id = id.unwrap_or_else(|| record_id(record));
                self.objects.insert(id, (Arc::clone(record), revision));
            }
            Write::Marker { incident, event } => {
                self.markers
                    .entry(incident.clone())
                    .or_default()
                    .insert(event.id());
            }
            Write::Incident { key, delta, mode } => match mode {
                IncidentMode::Create { first_page } => {
                    let held = first_page.as_ref().map(|c| (c.token.clone(), c.at));
                    self.incidents
                        .insert(key.clone(), (delta.opened(key, now), held));
                }
                IncidentMode::Add { .. } => {
                    if let Some((incident, _)) = self.incidents.get_mut(key) {
                        delta.add_to(incident, now);
                    }
                }
            },
        }
    }
}

fn record_id(record: &ObjectRecord) -> ObjectId {
    object_id(
        &record.source_bucket,
        &record.destination_bucket,
        &record.key,
        record.version_id.as_deref(),
    )
}

impl Ledger for InMemoryLedger {
    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, LedgerError> {
        if take_failure(&self.fail_commits) {
            return Err(unavailable("commit"));
        }
        if take_failure(&self.busy_commits) {
            return Ok(CommitOutcome::Cancelled {
                verdicts: vec![Verdict::Held; commit.writes.len()],
                busy: true,
            });
        }
        let mut state = self.lock();
        // A token seen before is answered as DynamoDB does: done, nothing applied again.
        if state.tokens.contains(&commit.token) {
            return Ok(CommitOutcome::Committed);
        }
        let ids: Vec<Option<ObjectId>> = commit
            .writes
            .iter()
            .map(|w| match w {
                Write::Object { record, .. } => Some(record_id(record)),
                _ => None,
            })
            .collect();
        let verdicts: Vec<Verdict> = commit
            .writes
            .iter()
            .zip(&ids)
            .map(|(w, id)| state.verdict(w, id.as_ref()))
            .collect();
        if verdicts.iter().any(|v| *v != Verdict::Held) {
            return Ok(CommitOutcome::Cancelled {
                verdicts,
                busy: false,
            });
        }
        for (write, id) in commit.writes.iter().zip(ids) {
            state.apply(write, id, commit.now);
        }
        state.tokens.insert(commit.token.clone());
        // The ambiguous failure: applied, but the answer is lost on the way back.
        if take_failure(&self.lose_commits) {
            return Err(unavailable("commit"));
        }
        Ok(CommitOutcome::Committed)
    }

    async fn incident(&self, incident: &IncidentKey) -> Result<Option<Incident>, LedgerError> {
        let found = self.lock().incidents.get(incident).map(|(i, _)| i.clone());
        self.read(u64::from(found.is_some()));
        Ok(found)
    }

    async fn claim_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> Result<Claimed<Incident, Incident>, LedgerError> {
        let mut state = self.lock();
        let Some((stored, held)) = state.incidents.get_mut(incident) else {
            return Ok(Claimed::Changed(None));
        };
        let free = held
            .as_ref()
            .is_none_or(|(_, at)| *at < claim.lease_cutoff());
        if stored.pages_sent != claim.expected_pages_sent {
            return Ok(Claimed::Changed(Some(stored.clone())));
        }
        if !free {
            return Ok(Claimed::Held(stored.clone()));
        }
        *held = Some((claim.token.clone(), claim.at));
        Ok(Claimed::Taken(stored.clone()))
    }

    async fn confirm_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
        sent: PageSent,
    ) -> Result<(), LedgerError> {
        if take_failure(&self.fail_confirms) {
            return Err(unavailable("confirm_page"));
        }
        let mut state = self.lock();
        if let Some((stored, held)) = state.incidents.get_mut(incident) {
            if held.as_ref().map(|(t, _)| t) == Some(&claim.token) {
                stored.pages_sent += 1;
                stored.first_page_at.get_or_insert(sent.at);
                stored.last_page_at = Some(sent.at);
                stored.event_count_at_last_page = sent.event_count;
                *held = None;
            }
        }
        Ok(())
    }

    async fn release_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> Result<(), LedgerError> {
        let mut state = self.lock();
        if let Some((_, held)) = state.incidents.get_mut(incident) {
            if held.as_ref().map(|(t, _)| t) == Some(&claim.token) {
                *held = None;
            }
        }
        Ok(())
    }
}

impl AlarmStore for InMemoryLedger {
    async fn alarm(&self, alarm_key: &str) -> Result<Option<(AlarmRecord, u64)>, LedgerError> {
        Ok(self.lock().alarms.get(alarm_key).cloned())
    }

    async fn put_alarm(
        &self,
        record: &AlarmRecord,
        expected: Option<u64>,
        _expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let mut state = self.lock();
        let current = state
            .alarms
            .get(&record.alarm_key)
            .map(|(_, revision)| *revision);
        if current != expected {
            return Ok(false);
        }
        state.alarms.insert(
            record.alarm_key.clone(),
            (record.clone(), expected.map_or(1, |r| r + 1)),
        );
        Ok(true)
    }
}

impl BacklogCounter for InMemoryLedger {
    async fn count_backlog(
        &self,
        source_bucket: &str,
        rule_id: Option<&str>,
        destination_bucket: Option<&str>,
    ) -> Result<u64, LedgerError> {
        // As the DynamoDB adapter: the source's incidents of the destination are read (the rule
        // is a filter, read all the same) and their backlog counters summed.
        let state = self.lock();
        let examined: Vec<&Incident> = state
            .incidents
            .values()
            .map(|(incident, _)| incident)
            .filter(|i| i.key.source_bucket == source_bucket)
            .filter(|i| destination_bucket.is_none_or(|d| i.key.destination_bucket == d))
            .collect();
        self.read(examined.len() as u64);
        let total: i64 = examined
            .iter()
            .filter(|i| rule_id.is_none_or(|r| i.key.rule_id == r))
            .map(|i| i.backlog_count)
            .sum();
        Ok(total.max(0) as u64)
    }
}

/// Metrics from a fixed set of series, or a failure.
#[derive(Debug, Default)]
pub struct FixedMetrics {
    pub series: Vec<Series>,
    pub fail: bool,
    /// Where the series live (`None`: every region). Asked elsewhere, CloudWatch answers each
    /// query with no datapoints, as it does for a metric published in another region.
    pub region: Option<String>,
    /// Every region asked, in order.
    pub asked: Mutex<Vec<String>>,
    /// How long each answer takes (a slow CloudWatch).
    pub delay: Option<std::time::Duration>,
}

impl MetricsSource for FixedMetrics {
    async fn recent(
        &self,
        region: &str,
        _metrics: &[AlarmMetric],
        _start: DateTime<Utc>,
        _end: DateTime<Utc>,
    ) -> Result<Vec<Series>, MetricsError> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(region.to_owned());
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if self.fail {
            return Err(MetricsError::Unavailable("injected fault".into()));
        }
        if self.region.as_deref().is_some_and(|r| r != region) {
            return Ok(self
                .series
                .iter()
                .map(|s| Series {
                    points: Vec::new(),
                    ..s.clone()
                })
                .collect());
        }
        Ok(self.series.clone())
    }
}

/// Keeps every published page; can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    pages: Mutex<Vec<Page>>,
    /// The next N publishes fail as if SNS were unavailable.
    pub fail_publishes: AtomicUsize,
}

impl RecordingNotifier {
    pub fn pages(&self) -> Vec<Page> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Notifier for RecordingNotifier {
    async fn publish(&self, page: &Page) -> Result<(), NotifyError> {
        if take_failure(&self.fail_publishes) {
            return Err(NotifyError::Unavailable("injected fault".into()));
        }
        self.pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(page.clone());
        Ok(())
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
