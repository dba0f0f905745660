//! Fakes of the canary's ports: S3 with scripted replication, the canary's records in the
//! in-memory ledger, and recorded metrics. Replication follows the monotonic clock (tokio's, so
//! tests with paused time run instantly).

use super::{take_failure, unavailable, InMemoryLedger};
use crate::canary::audit::AuditRecord;
use crate::canary::ports::{
    BucketFacts, BucketRef, CanaryStore, ObjectFacts, ObjectStore, ProbeMeasurement, ProbeMetrics,
    ProbeObject, StoreError,
};
use crate::canary::probe::{probe_token, ProbeRecord, RuleHealth};
use crate::canary::rollup::DailyRollup;
use crate::canary::setup::ReplicationSetup;
use crate::ledger::LedgerError;
use crate::report::NotedFinding;
use chrono::{DateTime, NaiveDate, Utc};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(super) struct CanaryState {
    runs: std::collections::HashSet<(String, String)>,
    pub(super) probes: BTreeMap<(String, String), ProbeRecord>,
    pending: BTreeMap<(String, String), ProbeRecord>,
    pub(super) health: HashMap<(String, String, String), (RuleHealth, u64)>,
    notices: HashMap<(String, String), DateTime<Utc>>,
    pub(super) audits: BTreeMap<String, AuditRecord>,
    /// Roll-ups by source, day, destination and rule (the adapter's sort order), with revisions.
    pub(super) rollups: BTreeMap<(String, NaiveDate, String, String), (DailyRollup, u64)>,
    /// Findings noticed per source and day: (id, severity, summary).
    pub(super) audit_days: BTreeMap<(String, NaiveDate), BTreeSet<NotedFinding>>,
}

impl CanaryStore for InMemoryLedger {
    async fn claim_run(
        &self,
        source_bucket: &str,
        run_id: &str,
        _expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        Ok(self
            .lock()
            .canary
            .runs
            .insert((source_bucket.into(), run_id.into())))
    }

    async fn save_probe(
        &self,
        probe: &ProbeRecord,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        if take_failure(&self.fail_records) {
            return Err(unavailable("save probe"));
        }
        let mut state = self.lock();
        let key = (probe.source_bucket.clone(), probe.id());
        if probe.unfinished() {
            state.canary.pending.insert(key.clone(), probe.clone());
        } else {
            state.canary.pending.remove(&key);
        }
        state.canary.probes.insert(key, probe.clone());
        Ok(())
    }

    async fn pending_probes(&self, source_bucket: &str) -> Result<Vec<ProbeRecord>, LedgerError> {
        Ok(self
            .lock()
            .canary
            .pending
            .iter()
            .filter(|((bucket, _), _)| bucket == source_bucket)
            .map(|(_, probe)| probe.clone())
            .collect())
    }

    async fn health(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
    ) -> Result<Option<(RuleHealth, u64)>, LedgerError> {
        Ok(self
            .lock()
            .canary
            .health
            .get(&(
                source_bucket.into(),
                destination_bucket.into(),
                rule_id.into(),
            ))
            .cloned())
    }

    async fn put_health(
        &self,
        health: &RuleHealth,
        expected: Option<u64>,
        _expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        if take_failure(&self.fail_health) {
            return Err(unavailable("write canary health"));
        }
        let mut state = self.lock();
        let key = (
            health.source_bucket.clone(),
            health.destination_bucket.clone(),
            health.rule_id.clone(),
        );
        let stored = state.canary.health.get(&key).map(|(_, revision)| *revision);
        if stored != expected {
            return Ok(false);
        }
        state
            .canary
            .health
            .insert(key, (health.clone(), expected.map_or(1, |r| r + 1)));
        Ok(true)
    }

    async fn claim_notice(
        &self,
        source_bucket: &str,
        finding: &str,
        now: DateTime<Utc>,
        period: chrono::Duration,
    ) -> Result<bool, LedgerError> {
        let mut state = self.lock();
        let key = (source_bucket.to_owned(), finding.to_owned());
        if state
            .canary
            .notices
            .get(&key)
            .is_some_and(|at| *at > now - period)
        {
            return Ok(false);
        }
        state.canary.notices.insert(key, now);
        Ok(true)
    }

    async fn release_notice(&self, source_bucket: &str, finding: &str) -> Result<(), LedgerError> {
        self.lock()
            .canary
            .notices
            .remove(&(source_bucket.to_owned(), finding.to_owned()));
        Ok(())
    }

    async fn save_audit(
        &self,
        audit: &AuditRecord,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        self.lock()
            .canary
            .audits
            .insert(audit.source_bucket.clone(), audit.clone());
        Ok(())
    }

    async fn daily_rollup(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
        day: NaiveDate,
    ) -> Result<Option<(DailyRollup, u64)>, LedgerError> {
        let key = (
            source_bucket.to_owned(),
            day,
            destination_bucket.to_owned(),
            rule_id.to_owned(),
        );
        Ok(self.lock().canary.rollups.get(&key).cloned())
    }

    async fn put_daily_rollup(
        &self,
        rollup: &DailyRollup,
        expected: Option<u64>,
        _expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        if take_failure(&self.fail_rollup) {
            return Err(unavailable("write canary daily roll-up"));
        }
        let key = (
            rollup.source_bucket.clone(),
            rollup.day,
            rollup.destination_bucket.clone(),
            rollup.rule_id.clone(),
        );
        let mut state = self.lock();
        let stored = state
            .canary
            .rollups
            .get(&key)
            .map(|(_, revision)| *revision);
        if stored != expected {
            return Ok(false);
        }
        state
            .canary
            .rollups
            .insert(key, (rollup.clone(), expected.map_or(1, |r| r + 1)));
        Ok(true)
    }

    async fn note_findings(
        &self,
        audit: &AuditRecord,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let key = (audit.source_bucket.clone(), audit.audited_at.date_naive());
        self.lock()
            .canary
            .audit_days
            .entry(key)
            .or_default()
            .extend(audit.findings.iter().map(|f| NotedFinding {
                severity: f.severity.as_str().to_owned(),
                id: f.id.clone(),
                summary: f.summary.clone(),
            }));
        Ok(())
    }

    async fn hand_over_redrive(&self, hand: &crate::redrive::HandOver) -> Result<(), LedgerError> {
        let mut state = self.lock();
        let key = super::redrive::hand_over_key(hand);
        let newer = state
            .hand_overs
            .get(&key)
            .is_none_or(|stored| stored.probe_at < hand.probe_at);
        if newer {
            state.hand_overs.insert(key, hand.clone());
        }
        Ok(())
    }

    async fn replication_failure(
        &self,
        probe: &ProbeRecord,
    ) -> Result<Option<String>, LedgerError> {
        Ok(self
            .lock()
            .objects
            .values()
            .map(|(o, _)| &**o)
            .find(|o| {
                o.source_bucket == probe.source_bucket
                    && o.destination_bucket == probe.destination_bucket
                    && o.key == probe.key
                    && o.version_id == probe.version_id
                    && o.failed_at.is_some()
            })
            .and_then(|o| o.failure_reason.clone()))
    }
}

impl InMemoryLedger {
    /// Every probe record, in key order (bucket, then time).
    pub fn probes(&self) -> Vec<ProbeRecord> {
        self.lock().canary.probes.values().cloned().collect()
    }

    pub fn rule_health(&self, source: &str, destination: &str, rule: &str) -> Option<RuleHealth> {
        self.lock()
            .canary
            .health
            .get(&(source.into(), destination.into(), rule.into()))
            .map(|(health, _)| health.clone())
    }
}

/// One PUT the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePut {
    pub bucket: String,
    pub key: String,
    pub tags: Vec<(String, String)>,
    /// The PUT named a server-side encryption.
    pub encrypted: bool,
}

/// One measurement the recording metrics received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedMeasurement {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    pub success: bool,
    pub latency_seconds: Option<f64>,
}

/// How S3 treats new objects written to a source, per destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// The replica shows up this long after the PUT.
    After(Duration),
    /// Never replicated; the source keeps saying PENDING.
    Stuck,
    /// S3 gives up: no replica, the source says FAILED.
    Fails,
}

#[derive(Debug, Clone)]
struct FakeVersion {
    version_id: String,
    visible_at: Instant,
    replica: bool,
    /// The `replmon-probe` metadata (`None`: not written by the canary).
    probe_token: Option<String>,
}

#[derive(Debug, Default)]
struct S3State {
    setups: HashMap<String, ReplicationSetup>,
    facts: HashMap<String, BucketFacts>,
    objects: HashMap<(String, String), Vec<FakeVersion>>,
    arrivals: HashMap<String, Arrival>,
    /// Buckets whose every call fails with this error.
    broken: HashMap<String, StoreError>,
    /// Buckets whose PUTs fail with this error (KMS refusing the bucket's key, ...).
    refused_puts: HashMap<String, StoreError>,
    /// Buckets where deletes are denied (Object Lock, a bucket policy).
    undeletable: std::collections::HashSet<String>,
    heads: HashMap<String, usize>,
    puts: Vec<ProbePut>,
    next_version: u64,
}

/// S3 with scripted replication: a PUT into a source schedules a replica in each destination the
/// setup's rules select, after that destination's [`Arrival`].
#[derive(Debug, Default)]
pub struct FakeS3 {
    state: Mutex<S3State>,
    /// The next N GetBucketReplication calls fail as unreachable.
    pub fail_replication_reads: AtomicUsize,
}

impl FakeS3 {
    fn lock(&self) -> std::sync::MutexGuard<'_, S3State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A versioned bucket with healthy facts, replicating by `setup` (if any).
    pub fn add_bucket(&self, bucket: &str, setup: Option<ReplicationSetup>) {
        let mut state = self.lock();
        state.facts.insert(
            bucket.into(),
            BucketFacts {
                region: Some("us-east-1".into()),
                versioning: crate::canary::ports::Versioning::Enabled,
                encryption: None,
                replication_events_configured: Some(true),
            },
        );
        if let Some(setup) = setup {
            state.setups.insert(bucket.into(), setup);
        }
    }

    pub fn set_facts(&self, bucket: &str, facts: BucketFacts) {
        self.lock().facts.insert(bucket.into(), facts);
    }

    pub fn set_arrival(&self, destination: &str, arrival: Arrival) {
        self.lock().arrivals.insert(destination.into(), arrival);
    }

    /// Every call on this bucket fails with `error` (`None`: works again).
    pub fn break_bucket(&self, bucket: &str, error: Option<StoreError>) {
        let mut state = self.lock();
        match error {
            Some(error) => state.broken.insert(bucket.into(), error),
            None => state.broken.remove(bucket),
        };
    }

    /// Every PUT into this bucket fails with `error` (`None`: works again); other calls work.
    pub fn refuse_puts(&self, bucket: &str, error: Option<StoreError>) {
        let mut state = self.lock();
        match error {
            Some(error) => state.refused_puts.insert(bucket.into(), error),
            None => state.refused_puts.remove(bucket),
        };
    }

    /// Deletes in this bucket are denied from now on.
    pub fn deny_deletes(&self, bucket: &str) {
        self.lock().undeletable.insert(bucket.into());
    }

    /// HEAD requests sent to a bucket.
    pub fn heads(&self, bucket: &str) -> usize {
        self.lock().heads.get(bucket).copied().unwrap_or(0)
    }

    /// Keys (with versions and replicas) present in a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let state = self.lock();
        let mut keys: Vec<String> = state
            .objects
            .iter()
            .filter(|((b, _), versions)| b == bucket && !versions.is_empty())
            .map(|((_, k), _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    pub fn puts(&self) -> Vec<ProbePut> {
        self.lock().puts.clone()
    }

    /// Put an object that is not a probe (cleanup must leave it alone).
    pub fn put_plain(&self, bucket: &str, key: &str) {
        let mut state = self.lock();
        state.next_version += 1;
        let version_id = format!("v{}", state.next_version);
        state
            .objects
            .entry((bucket.into(), key.into()))
            .or_default()
            .push(FakeVersion {
                version_id,
                visible_at: Instant::now(),
                replica: false,
                probe_token: None,
            });
    }

    fn check(&self, bucket: &str) -> Result<(), StoreError> {
        match self.lock().broken.get(bucket) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

impl ObjectStore for FakeS3 {
    async fn replication(
        &self,
        bucket: BucketRef<'_>,
    ) -> Result<Option<ReplicationSetup>, StoreError> {
        let bucket = bucket.bucket;
        if take_failure(&self.fail_replication_reads) {
            return Err(StoreError::Unreachable {
                operation: "GetBucketReplication",
                bucket: bucket.into(),
                detail: "injected fault".into(),
            });
        }
        self.check(bucket)?;
        Ok(self.lock().setups.get(bucket).cloned())
    }

    async fn facts(
        &self,
        bucket: &str,
        _with_notifications: bool,
    ) -> Result<BucketFacts, StoreError> {
        self.check(bucket)?;
        self.lock()
            .facts
            .get(bucket)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchBucket {
                operation: "HeadBucket",
                bucket: bucket.into(),
            })
    }

    async fn put(
        &self,
        bucket: BucketRef<'_>,
        object: ProbeObject<'_>,
    ) -> Result<Option<String>, StoreError> {
        self.check(bucket.bucket)?;
        if let Some(error) = self.lock().refused_puts.get(bucket.bucket) {
            return Err(error.clone());
        }
        let now = Instant::now();
        let mut state = self.lock();
        state.next_version += 1;
        let version_id = format!("v{}", state.next_version);
        state.puts.push(ProbePut {
            bucket: bucket.bucket.into(),
            key: object.key.into(),
            tags: object.tags.to_vec(),
            encrypted: object.encryption.is_some(),
        });
        state
            .objects
            .entry((bucket.bucket.into(), object.key.into()))
            .or_default()
            .push(FakeVersion {
                version_id: version_id.clone(),
                visible_at: now,
                replica: false,
                probe_token: Some(probe_token(object.key)),
            });
        let destinations: Vec<String> = state
            .setups
            .get(bucket.bucket)
            .map(|setup| {
                setup
                    .destinations_for(object.key, object.tags)
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for destination in destinations {
            let arrival = state
                .arrivals
                .get(&destination)
                .cloned()
                .unwrap_or(Arrival::After(Duration::from_secs(1)));
            if let Arrival::After(delay) = arrival {
                state
                    .objects
                    .entry((destination, object.key.into()))
                    .or_default()
                    .push(FakeVersion {
                        version_id: version_id.clone(),
                        visible_at: now + delay,
                        replica: true,
                        probe_token: Some(probe_token(object.key)),
                    });
            }
        }
        Ok(Some(version_id))
    }

    async fn head(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectFacts>, StoreError> {
        *self.lock().heads.entry(bucket.bucket.into()).or_default() += 1;
        self.check(bucket.bucket)?;
        let now = Instant::now();
        let state = self.lock();
        let Some(version) = state
            .objects
            .get(&(bucket.bucket.into(), key.into()))
            .and_then(|versions| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.visible_at <= now && version_id.is_none_or(|id| v.version_id == id))
            })
        else {
            return Ok(None);
        };
        let replication_status = if version.replica {
            Some("REPLICA".to_owned())
        } else {
            // A source object: what its destinations make of it.
            let destinations = state
                .setups
                .get(bucket.bucket)
                .map(|s| s.destinations_for(key, &[]))
                .unwrap_or_default();
            let mut status = None;
            for destination in destinations {
                let this = match state.arrivals.get(destination) {
                    Some(Arrival::Fails) => "FAILED",
                    Some(Arrival::Stuck) => "PENDING",
                    _ => {
                        let arrived = state
                            .objects
                            .get(&(destination.into(), key.into()))
                            .is_some_and(|vs| vs.iter().any(|v| v.visible_at <= now));
                        if arrived {
                            "COMPLETED"
                        } else {
                            "PENDING"
                        }
                    }
                };
                status = match (status, this) {
                    (Some("FAILED"), _) | (_, "FAILED") => Some("FAILED"),
                    (Some("PENDING"), _) | (_, "PENDING") => Some("PENDING"),
                    _ => Some("COMPLETED"),
                };
            }
            status.map(str::to_owned)
        };
        Ok(Some(ObjectFacts {
            version_id: Some(version.version_id.clone()),
            replication_status,
            probe_token: version.probe_token.clone(),
        }))
    }

    async fn delete_probe(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<u32, StoreError> {
        self.check(bucket.bucket)?;
        if self.lock().undeletable.contains(bucket.bucket) {
            return Err(StoreError::Denied {
                operation: "DeleteObject",
                bucket: bucket.bucket.into(),
                detail: "AccessDenied (object lock)".into(),
            });
        }
        let token = probe_token(key);
        let mut state = self.lock();
        let Some(versions) = state.objects.get_mut(&(bucket.bucket.into(), key.into())) else {
            return Ok(0);
        };
        let before = versions.len();
        versions.retain(|v| {
            let ours = v.probe_token.as_deref() == Some(token.as_str())
                && version_id.is_none_or(|id| v.version_id == id);
            !ours
        });
        let removed = before - versions.len();
        if versions.is_empty() {
            state.objects.remove(&(bucket.bucket.into(), key.into()));
        }
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }
}

/// Keeps every probe measurement.
#[derive(Debug, Default)]
pub struct RecordingProbeMetrics {
    recorded: Mutex<Vec<RecordedMeasurement>>,
    count: AtomicUsize,
}

impl RecordingProbeMetrics {
    pub fn recorded(&self) -> Vec<RecordedMeasurement> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl ProbeMetrics for RecordingProbeMetrics {
    fn record(&self, m: &ProbeMeasurement<'_>) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedMeasurement {
                source_bucket: m.source_bucket.into(),
                destination_bucket: m.destination_bucket.into(),
                rule_id: m.rule_id.into(),
                success: m.success,
                latency_seconds: m.latency_seconds,
            });
    }
}
