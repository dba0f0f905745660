//! The canary: on a schedule, write a probe object under every enabled replication rule of each
//! watched bucket, time its arrival in the rule's destination, carry probes that are still on
//! their way over to later runs, and page after consecutive bad probes.
//!
//! One run, per bucket (buckets concurrently, one failing bucket never stops the others):
//! 1. read the replication configuration (every run: nobody keeps a list of pairs) and audit it;
//! 2. claim the run (a redelivered schedule writes no second probe);
//! 3. PUT one probe per enabled rule and poll each destination with adaptive back-off until the
//!    probe arrives or the budget ends; meanwhile re-check probes pending from earlier runs;
//! 4. record every probe, emit metrics, delete resolved probes everywhere, count outcomes into
//!    each rule's health and send the pages that health owes.

pub mod audit;
pub mod emf;
pub mod kms;
pub mod measure;
pub mod pages;
pub mod ports;
pub mod probe;
pub mod setup;

use crate::catalog;
use crate::clock::Clock;
use crate::page::Notifier;
use audit::{audit, AuditRecord, DestinationFacts};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use measure::{millis, LatencyBounds, PollSchedule};
use ports::{
    BucketFacts, BucketRef, CanaryStore, ObjectStore, ProbeMeasurement, ProbeMetrics, ProbeObject,
    StoreError,
};
use probe::{HealthChange, ProbeRecord, ProbeStatus, RuleHealth};
use serde::{Deserialize, Serialize};
use setup::{CanarySegment, ReplicationRule, ReplicationSetup};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Tunables of the canary (README's configuration table).
#[derive(Debug, Clone, PartialEq)]
pub struct CanarySettings {
    pub segment: CanarySegment,
    /// How long one run keeps polling (well under the function timeout).
    pub budget: Duration,
    /// A probe not in the destination this long after its PUT is missing.
    pub deadline: chrono::Duration,
    /// A probe arriving later than this is slow.
    pub latency_threshold: chrono::Duration,
    /// Bad probes in a row before a page (a failure pages at once).
    pub bad_probes_to_page: u32,
    pub poll: PollSchedule,
    /// An audit finding is noticed at most once per period.
    pub audit_period: chrono::Duration,
    /// Probe and health records expire after this.
    pub ttl: chrono::Duration,
    /// A run may outlast its budget by this much (cleanup, records, pages): probes younger than
    /// budget + this may belong to a run still going, and other runs leave them alone.
    pub overlap_margin: chrono::Duration,
}

impl Default for CanarySettings {
    fn default() -> Self {
        CanarySettings {
            segment: CanarySegment::new("replmon-canary/").unwrap_or_else(|_| unreachable!()),
            budget: Duration::from_secs(45),
            deadline: chrono::Duration::seconds(900),
            latency_threshold: chrono::Duration::seconds(900),
            bad_probes_to_page: 2,
            poll: PollSchedule::default(),
            audit_period: chrono::Duration::days(1),
            ttl: chrono::Duration::days(90),
            overlap_margin: chrono::Duration::seconds(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The invocation payload is not JSON or not an object: nothing to retry.
    #[error("the canary's trigger is not a JSON object (expected an EventBridge Scheduled Event or an EventBridge Scheduler input): {0}")]
    BadTrigger(String),
    /// The ledger or SNS failed during the run; what was recorded stays recorded and the next
    /// run (or Lambda's retry of this one) picks up the rest.
    #[error("canary run {run_id} incomplete: {problems}")]
    Incomplete { run_id: String, problems: String },
}

/// What started the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Unique per scheduled run and the same on redelivery.
    pub run_id: String,
    /// Buckets named in a Scheduler input, instead of the configured list.
    pub buckets: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawTrigger {
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    id: Option<String>,
    run_id: Option<String>,
    buckets: Option<Vec<String>>,
}

impl Trigger {
    /// An EventBridge "Scheduled Event" (run ID: the event ID), or an EventBridge Scheduler
    /// input such as `{"run_id": "<aws.scheduler.execution-id>", "buckets": [...]}` (both
    /// optional; without a run ID, the Lambda request ID, which Lambda keeps on its retries).
    pub fn parse(payload: &str, request_id: &str) -> Result<Trigger, CanaryError> {
        // `[null, null, "run", ["bucket"]]` would read as a trigger (tests/bad_input.rs).
        if !crate::event::is_json_object_text(payload) {
            return Err(CanaryError::BadTrigger(
                match payload.trim_start().chars().next() {
                    Some(first) => format!("it starts with {first:?}, not '{{'"),
                    None => "it is empty".to_owned(),
                },
            ));
        }
        let raw: RawTrigger =
            serde_json::from_str(payload).map_err(|e| CanaryError::BadTrigger(e.to_string()))?;
        let scheduled = raw.detail_type.as_deref() == Some("Scheduled Event");
        let run_id = if scheduled { raw.id } else { raw.run_id }
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| request_id.to_owned());
        let buckets = raw
            .buckets
            .map(|list| {
                list.into_iter()
                    .map(|b| b.trim().to_owned())
                    .filter(|b| !b.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|list| !list.is_empty());
        Ok(Trigger { run_id, buckets })
    }
}

/// What one run did, returned by the invocation (and logged).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    pub run_id: String,
    pub buckets: Vec<BucketReport>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct BucketReport {
    pub bucket: String,
    /// The run was claimed before (redelivered schedule): no new probes.
    pub repeated_run: bool,
    pub probes: Vec<ProbeSummary>,
    /// Audit findings noticed in this run.
    pub notices: Vec<String>,
    pub pages: Vec<String>,
    /// What S3 would not let the canary see or do (reported, paged as "cannot verify").
    pub problems: Vec<String>,
    /// Failures to record or to page: they fail the invocation so Lambda retries it and its
    /// error metric shows them.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    pub rule_id: String,
    pub destination_bucket: String,
    pub key: String,
    pub status: ProbeStatus,
    pub carried_over: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertainty_ms: Option<u64>,
    pub head_requests: u32,
}

impl ProbeSummary {
    fn of(probe: &ProbeRecord, carried_over: bool) -> Self {
        ProbeSummary {
            rule_id: probe.rule_id.clone(),
            destination_bucket: probe.destination_bucket.clone(),
            key: probe.key.clone(),
            status: probe.status,
            carried_over,
            latency_ms: probe.latency_ms,
            uncertainty_ms: probe.bounds().map(|b| b.uncertainty_ms()),
            head_requests: probe.head_requests,
        }
    }
}

/// Wall-clock times derived from one reading plus the monotonic clock, so latencies and the
/// records' timestamps agree (and tests with paused time see both move).
struct RunClock {
    started: Instant,
    wall_start: DateTime<Utc>,
    budget_end: Instant,
}

impl RunClock {
    fn wall(&self, at: Instant) -> DateTime<Utc> {
        let elapsed = at.saturating_duration_since(self.started);
        self.wall_start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    fn now(&self) -> DateTime<Utc> {
        self.wall(Instant::now())
    }
}

/// Health records are keyed by destination and rule.
type HealthKey = (String, String);

/// The bucket-level pseudo rule: the replication configuration itself could not be read.
const CONFIGURATION_RULE: &str = "*";

/// Pending probes one run looks at, at most.
const MAX_RECHECKS_PER_RUN: usize = 200;

/// Cleanup attempts (one per run) before a probe's leftovers are reported and abandoned.
const MAX_CLEANUP_ATTEMPTS: u32 = 5;

pub struct Canary<S, L, N, M, C> {
    store: S,
    ledger: L,
    notifier: N,
    metrics: M,
    clock: C,
    buckets: Vec<String>,
    settings: CanarySettings,
}

impl<S, L, N, M, C> Canary<S, L, N, M, C>
where
    S: ObjectStore,
    L: CanaryStore,
    N: Notifier,
    M: ProbeMetrics,
    C: Clock,
{
    pub fn new(
        store: S,
        ledger: L,
        notifier: N,
        metrics: M,
        clock: C,
        buckets: Vec<String>,
        settings: CanarySettings,
    ) -> Self {
        Canary {
            store,
            ledger,
            notifier,
            metrics,
            clock,
            buckets,
            settings,
        }
    }

    /// One invocation: parse the trigger, run, report.
    pub async fn handle(&self, payload: &str, request_id: &str) -> Result<RunReport, CanaryError> {
        let trigger = Trigger::parse(payload, request_id)?;
        let report = self.run(&trigger).await;
        for bucket in &report.buckets {
            for problem in &bucket.problems {
                tracing::warn!(run_id = %report.run_id, bucket = %bucket.bucket, %problem, "canary could not check");
            }
        }
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "canary run");
        let errors: Vec<String> = report
            .buckets
            .iter()
            .flat_map(|b| b.errors.iter().map(move |e| format!("{}: {e}", b.bucket)))
            .collect();
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(CanaryError::Incomplete {
                run_id: report.run_id,
                problems: errors.join("; "),
            })
        }
    }

    pub async fn run(&self, trigger: &Trigger) -> RunReport {
        let started = Instant::now();
        let clock = RunClock {
            started,
            wall_start: self.clock.now(),
            budget_end: started + self.settings.budget,
        };
        let buckets = trigger.buckets.as_ref().unwrap_or(&self.buckets);
        let reports = join_all(
            buckets
                .iter()
                .map(|bucket| self.run_bucket(bucket, &trigger.run_id, &clock)),
        )
        .await;
        RunReport {
            run_id: trigger.run_id.clone(),
            buckets: reports,
        }
    }

    async fn run_bucket(&self, bucket: &str, run_id: &str, clock: &RunClock) -> BucketReport {
        let mut report = BucketReport {
            bucket: bucket.to_owned(),
            ..Default::default()
        };
        // The run is claimed first: a redelivered schedule (same run ID) neither probes nor
        // counts anything twice; it only looks at probes from earlier runs.
        let (claimed, pending, source) = futures::join!(
            self.ledger
                .claim_run(bucket, run_id, clock.wall_start + chrono::Duration::days(2)),
            self.ledger.pending_probes(bucket),
            self.store.facts(bucket, true)
        );
        let claimed = claimed.unwrap_or_else(|e| {
            report.errors.push(e.to_string());
            false
        });
        report.repeated_run = !claimed;
        let pending = self.pending_to_recheck(
            pending.unwrap_or_else(|e| {
                report.errors.push(e.to_string());
                Vec::new()
            }),
            clock,
        );
        let source = source.map_err(|e| report.problems.push(e.to_string())).ok();
        let source_region = source.as_ref().and_then(|f| f.region.clone());
        let setup = self
            .store
            .replication(BucketRef {
                bucket,
                region: source_region.as_deref(),
            })
            .await;
        let check = |error: Option<&StoreError>| {
            claimed.then(|| self.configuration_check(bucket, run_id, clock, error))
        };
        let setup = match setup {
            Ok(setup) => setup,
            Err(error) => {
                // Without the configuration nothing new can be probed; earlier probes still can.
                report.problems.push(error.to_string());
                let checks = check(Some(&error)).into_iter().collect();
                let rechecked = self.recheck_all(pending, clock).await;
                self.finish(bucket, None, rechecked, checks, clock, &mut report)
                    .await;
                return report;
            }
        };
        let checks: Vec<ProbeRecord> = check(None).into_iter().collect();
        let enabled: Vec<&ReplicationRule> = setup
            .as_ref()
            .map(|s| s.enabled_rules().collect())
            .unwrap_or_default();
        let destinations = join_all(
            enabled
                .iter()
                .map(|rule| self.store.facts(&rule.destination_bucket, false)),
        )
        .await;
        // The audit needs the source's facts; the probes do not.
        if let Some(facts) = &source {
            self.notify_findings(
                bucket,
                facts,
                setup.as_ref(),
                &destinations,
                clock,
                &mut report,
            )
            .await;
        }
        let Some(setup) = setup.as_ref() else {
            let rechecked = self.recheck_all(pending, clock).await;
            self.finish(bucket, None, rechecked, checks, clock, &mut report)
                .await;
            return report;
        };
        let source = source.unwrap_or_default();
        let new_probes = async {
            if !claimed {
                return Vec::new();
            }
            join_all(enabled.iter().zip(&destinations).map(|(rule, facts)| {
                let region = facts.as_ref().ok().and_then(|f| f.region.clone());
                self.probe_rule(bucket, &source, rule, region, run_id, clock)
            }))
            .await
        };
        let (fresh, rechecked) = futures::join!(new_probes, self.recheck_all(pending, clock));
        let mut probes: Vec<(ProbeRecord, bool)> = Vec::new();
        for (probe, error) in fresh {
            report.errors.extend(error);
            probes.push((probe, false));
        }
        probes.extend(rechecked);
        self.finish(bucket, Some(setup), probes, checks, clock, &mut report)
            .await;
        report
    }

    /// Pending probes this run looks at: not those a run still in progress wrote (it owns them
    /// until its budget ends), and at most [`MAX_RECHECKS_PER_RUN`], oldest first, so a backlog
    /// (cleanup denied for weeks) cannot make a run outlast its timeout.
    fn pending_to_recheck(
        &self,
        mut pending: Vec<ProbeRecord>,
        clock: &RunClock,
    ) -> Vec<ProbeRecord> {
        let owned_until = clock.wall_start
            - chrono::Duration::from_std(self.settings.budget).unwrap_or_default()
            - self.settings.overlap_margin;
        pending.retain(|p| p.put_at < owned_until);
        pending.sort_by_key(|p| p.put_at);
        pending.truncate(MAX_RECHECKS_PER_RUN);
        pending
    }

    /// Count the configuration read as a probe of the bucket-level pseudo rule, so an unreadable
    /// configuration pages after the same consecutive-bad rule and recovers like any probe.
    fn configuration_check(
        &self,
        bucket: &str,
        run_id: &str,
        clock: &RunClock,
        error: Option<&StoreError>,
    ) -> ProbeRecord {
        let now = clock.now();
        ProbeRecord {
            source_bucket: bucket.to_owned(),
            destination_bucket: CONFIGURATION_RULE.to_owned(),
            destination_region: None,
            rule_id: CONFIGURATION_RULE.to_owned(),
            run_id: run_id.to_owned(),
            key: String::new(),
            version_id: None,
            put_at: now,
            deadline: now,
            status: if error.is_some() {
                ProbeStatus::Unverifiable
            } else {
                ProbeStatus::Arrived
            },
            latency_ms: None,
            latency_min_ms: None,
            latency_max_ms: None,
            last_miss_at: None,
            head_requests: 0,
            resolved_at: Some(now),
            detail: error.map(|e| format!("reading the replication configuration: {e}")),
            source_status: None,
            source_region: None,
            cleaned: true,
            counted: false,
            cleanup_attempts: 0,
            kms_refusal: None,
        }
    }

    async fn notify_findings(
        &self,
        bucket: &str,
        source: &BucketFacts,
        setup: Option<&ReplicationSetup>,
        destinations: &[DestinationFacts],
        clock: &RunClock,
        report: &mut BucketReport,
    ) {
        let findings = audit(bucket, source, setup, destinations);
        let record = AuditRecord {
            source_bucket: bucket.to_owned(),
            audited_at: clock.now(),
            findings: findings.clone(),
        };
        if let Err(e) = self
            .ledger
            .save_audit(&record, clock.wall_start + self.settings.ttl)
            .await
        {
            report.errors.push(e.to_string());
        }
        for finding in findings {
            let now = clock.now();
            match self
                .ledger
                .claim_notice(bucket, &finding.id, now, self.settings.audit_period)
                .await
            {
                Ok(false) => continue,
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
                Ok(true) => {}
            }
            let page = pages::audit_notice(bucket, &finding);
            match self.notifier.publish(&page).await {
                Ok(()) => report.notices.push(finding.id),
                Err(e) => {
                    report
                        .errors
                        .push(format!("publishing notice {}: {e}", finding.id));
                    if let Err(e) = self.ledger.release_notice(bucket, &finding.id).await {
                        report.errors.push(e.to_string());
                    }
                }
            }
        }
    }

    /// Write one probe under a rule and follow it until it arrives or the budget ends.
    async fn probe_rule(
        &self,
        bucket: &str,
        source: &BucketFacts,
        rule: &ReplicationRule,
        destination_region: Option<String>,
        run_id: &str,
        clock: &RunClock,
    ) -> (ProbeRecord, Option<String>) {
        let key = self.settings.segment.probe_key(rule, run_id);
        let body = serde_json::json!({
            "replmon": "canary probe: safe to delete",
            "rule": rule.id,
            "run": run_id,
        })
        .to_string();
        let put = self
            .store
            .put(
                BucketRef {
                    bucket,
                    region: source.region.as_deref(),
                },
                ProbeObject {
                    key: &key,
                    body: &body,
                    tags: &rule.filter.tags,
                    encryption: source.encryption.as_ref(),
                },
            )
            .await;
        let acked = Instant::now();
        let put_at = clock.wall(acked);
        let mut probe = ProbeRecord {
            source_bucket: bucket.to_owned(),
            destination_bucket: rule.destination_bucket.clone(),
            destination_region,
            rule_id: rule.id.clone(),
            run_id: run_id.to_owned(),
            key,
            version_id: None,
            put_at,
            deadline: put_at + self.settings.deadline,
            status: ProbeStatus::Pending,
            latency_ms: None,
            latency_min_ms: None,
            latency_max_ms: None,
            last_miss_at: None,
            head_requests: 0,
            resolved_at: None,
            detail: None,
            source_status: None,
            source_region: source.region.clone(),
            cleaned: false,
            counted: false,
            cleanup_attempts: 0,
            kms_refusal: None,
        };
        match put {
            Ok(version) => probe.version_id = version,
            Err(error) => return (kms::unwritten(probe, &error, source), None),
        }
        // Recorded before polling, so a run that dies mid-poll leaves the probe to the next run.
        let problem = self
            .ledger
            .save_probe(&probe, put_at + self.settings.ttl)
            .await
            .err()
            .map(|e| e.to_string());
        self.poll(&mut probe, acked, clock).await;
        (probe, problem)
    }

    /// HEAD the destination on the back-off schedule until the replica is found, the destination
    /// keeps failing, or the budget ends.
    async fn poll(&self, probe: &mut ProbeRecord, acked: Instant, clock: &RunClock) {
        const ERRORS_TO_GIVE_UP: u32 = 3;
        const FAILURE_CHECK_EVERY: u32 = 4;
        let mut waited = Duration::ZERO;
        let mut last_miss: Option<Instant> = None;
        let mut errors = 0;
        let mut last_error = None;
        loop {
            waited += self.settings.poll.next_gap(waited);
            let at = acked + waited;
            if at > clock.budget_end {
                break;
            }
            tokio::time::sleep_until(at).await;
            let sent = Instant::now();
            probe.head_requests += 1;
            let found = self
                .store
                .head(destination_ref(probe), &probe.key, None)
                .await;
            let answered = Instant::now();
            waited = waited.max(answered.saturating_duration_since(acked));
            match found {
                Ok(Some(_)) => {
                    let lower = last_miss.map_or(Duration::ZERO, |m| m - acked);
                    let bounds = LatencyBounds::new(millis(lower), millis(answered - acked));
                    self.arrived(probe, bounds, clock.wall(answered));
                    return;
                }
                Ok(None) => {
                    last_miss = Some(sent);
                    errors = 0;
                    // Every few looks, ask the ledger whether S3 already reported the probe's
                    // replication as failed (replication-events records it within seconds).
                    if probe.head_requests.is_multiple_of(FAILURE_CHECK_EVERY) {
                        if let Ok(Some(reason)) = self.ledger.replication_failure(probe).await {
                            probe.last_miss_at = last_miss.map(|m| clock.wall(m));
                            failed(probe, &reason, clock.now());
                            return;
                        }
                    }
                }
                Err(error) => {
                    errors += 1;
                    last_error = Some(error);
                    if errors >= ERRORS_TO_GIVE_UP {
                        break;
                    }
                }
            }
        }
        probe.last_miss_at = last_miss.map(|m| clock.wall(m));
        // Given up after errors in a row, or not one answer in the whole budget.
        let unreadable = errors >= ERRORS_TO_GIVE_UP || (errors > 0 && last_miss.is_none());
        match last_error.filter(|_| unreadable) {
            Some(error) => self.cannot_verify(probe, &error, clock).await,
            _ => self.unarrived(probe, clock).await,
        }
    }

    /// The destination cannot be read: unless S3 reported the replication as failed (which says
    /// more), the probe cannot be verified.
    async fn cannot_verify(&self, probe: &mut ProbeRecord, error: &StoreError, clock: &RunClock) {
        if let Ok(Some(reason)) = self.ledger.replication_failure(probe).await {
            failed(probe, &reason, clock.now());
            return;
        }
        probe.resolve(
            ProbeStatus::Unverifiable,
            clock.now(),
            Some(format!("the destination cannot be read: {error}")),
        );
    }

    fn arrived(&self, probe: &mut ProbeRecord, bounds: LatencyBounds, at: DateTime<Utc>) {
        probe.set_bounds(bounds);
        let threshold = self.settings.latency_threshold.num_milliseconds().max(0) as u64;
        let status = if bounds.estimate_ms() > threshold {
            ProbeStatus::Slow
        } else {
            ProbeStatus::Arrived
        };
        probe.resolve(status, at, None);
    }

    /// Not in the destination (yet): ask the ledger and the source why, and settle the probe once
    /// S3 has given up or the deadline has passed.
    async fn unarrived(&self, probe: &mut ProbeRecord, clock: &RunClock) {
        let (failure, source) = futures::join!(
            self.ledger.replication_failure(probe),
            self.store
                .head(source_ref(probe), &probe.key, probe.version_id.as_deref(),)
        );
        let now = clock.now();
        if let Ok(Some(reason)) = failure {
            failed(probe, &reason, now);
            return;
        }
        match source {
            Ok(Some(facts)) => probe.source_status = facts.replication_status,
            Ok(None) => probe.detail = Some("the probe is gone from the source bucket".into()),
            Err(_) => {}
        }
        if probe.source_status.as_deref() == Some("FAILED") {
            probe.resolve(
                ProbeStatus::Failed,
                now,
                Some("the source object's ReplicationStatus is FAILED".into()),
            );
        } else if now >= probe.deadline {
            let status = if probe.source_status.as_deref() == Some("PENDING") {
                ProbeStatus::Stalled
            } else {
                ProbeStatus::Missing
            };
            probe.resolve(status, now, None);
        }
    }

    /// Probes from earlier runs, each looked at once (marked as carried over).
    async fn recheck_all(
        &self,
        pending: Vec<ProbeRecord>,
        clock: &RunClock,
    ) -> Vec<(ProbeRecord, bool)> {
        join_all(
            pending
                .into_iter()
                .map(|probe| async { (self.recheck(probe, clock).await, true) }),
        )
        .await
    }

    /// One look at a probe from an earlier run.
    async fn recheck(&self, mut probe: ProbeRecord, clock: &RunClock) -> ProbeRecord {
        if probe.status != ProbeStatus::Pending {
            return probe; // resolved earlier: only its cleanup or its counting is left
        }
        let sent = Instant::now();
        probe.head_requests += 1;
        let found = self
            .store
            .head(destination_ref(&probe), &probe.key, None)
            .await;
        let answered = clock.now();
        match found {
            Ok(Some(_)) => {
                let since_put =
                    |at: DateTime<Utc>| (at - probe.put_at).num_milliseconds().max(0) as u64;
                let lower = probe.last_miss_at.map_or(0, since_put);
                let bounds = LatencyBounds::new(lower, since_put(answered));
                self.arrived(&mut probe, bounds, answered);
            }
            Ok(None) => {
                probe.last_miss_at = Some(clock.wall(sent));
                self.unarrived(&mut probe, clock).await;
            }
            Err(error) if answered >= probe.deadline => {
                self.cannot_verify(&mut probe, &error, clock).await;
            }
            Err(_) => {} // still time: the next run looks again
        }
        probe
    }

    /// Measure, clean up and count every probe of the run, send what health owes, then record
    /// the probes. A probe stays in the pending partition until it is resolved, cleaned up and
    /// counted, so a failed health write loses no outcome: the next run counts it.
    async fn finish(
        &self,
        bucket: &str,
        setup: Option<&ReplicationSetup>,
        probes: Vec<(ProbeRecord, bool)>,
        checks: Vec<ProbeRecord>,
        clock: &RunClock,
        report: &mut BucketReport,
    ) {
        let (probes, carried): (Vec<ProbeRecord>, Vec<bool>) = probes.into_iter().unzip();
        let settled = join_all(
            probes
                .into_iter()
                .map(|probe| self.settle(probe, setup, clock)),
        )
        .await;
        let mut probes: Vec<ProbeRecord> = Vec::with_capacity(settled.len());
        for (probe, problem) in settled {
            report.problems.extend(problem);
            probes.push(probe);
        }
        let mut by_rule: BTreeMap<HealthKey, Vec<usize>> = BTreeMap::new();
        if let Some(setup) = setup {
            // Every rule's health is visited each run, so pages a failed publish left owed go out.
            for rule in setup.enabled_rules() {
                by_rule
                    .entry((rule.destination_bucket.clone(), rule.id.clone()))
                    .or_default();
            }
        }
        for (i, probe) in probes.iter().enumerate() {
            if probe.status != ProbeStatus::Pending && !probe.counted {
                by_rule
                    .entry((probe.destination_bucket.clone(), probe.rule_id.clone()))
                    .or_default()
                    .push(i);
            }
        }
        for check in &checks {
            by_rule
                .entry((check.destination_bucket.clone(), check.rule_id.clone()))
                .or_default();
        }
        for ((destination, rule_id), indices) in by_rule {
            let mut group: Vec<&ProbeRecord> = indices.iter().map(|&i| &probes[i]).collect();
            group.extend(
                checks
                    .iter()
                    .filter(|c| c.destination_bucket == destination && c.rule_id == rule_id),
            );
            group.sort_by_key(|p| p.put_at);
            let counted = self
                .update_health(bucket, &destination, &rule_id, &group, clock, report)
                .await;
            if counted {
                for i in indices {
                    probes[i].counted = true;
                }
            }
        }
        let saved = join_all(probes.iter().map(|probe| {
            self.ledger
                .save_probe(probe, probe.put_at + self.settings.ttl)
        }))
        .await;
        for error in saved.into_iter().filter_map(Result::err) {
            report.errors.push(error.to_string());
        }
        for (probe, carried_over) in probes.iter().zip(carried) {
            report.probes.push(ProbeSummary::of(probe, carried_over));
        }
    }

    /// Emit the metric of a probe resolved in this run, and clean up a resolved probe.
    async fn settle(
        &self,
        mut probe: ProbeRecord,
        setup: Option<&ReplicationSetup>,
        clock: &RunClock,
    ) -> (ProbeRecord, Option<String>) {
        if probe.status != ProbeStatus::Pending && probe.resolved_at >= Some(clock.wall_start) {
            self.metrics.record(&ProbeMeasurement {
                source_bucket: &probe.source_bucket,
                destination_bucket: &probe.destination_bucket,
                rule_id: &probe.rule_id,
                at: probe.resolved_at.unwrap_or(probe.put_at),
                success: probe.status == ProbeStatus::Arrived,
                latency_seconds: probe.latency_ms.map(|ms| ms as f64 / 1000.0),
                uncertainty_seconds: probe.bounds().map(|b| b.uncertainty_ms() as f64 / 1000.0),
            });
        }
        if probe.status == ProbeStatus::Pending || probe.cleaned {
            return (probe, None);
        }
        let problem = match self.clean_up(&probe, setup, clock).await {
            Ok(true) => {
                probe.cleaned = true;
                None
            }
            Ok(false) => None, // still on its way to another destination: next run
            Err(error) => {
                probe.cleanup_attempts += 1;
                if probe.cleanup_attempts >= MAX_CLEANUP_ATTEMPTS {
                    // Given up, reported; the record says what was left where.
                    probe.cleaned = true;
                    probe.detail = Some(format!(
                        "{}cleanup abandoned after {} attempts: {error}",
                        probe
                            .detail
                            .as_deref()
                            .map(|d| format!("{d}; "))
                            .unwrap_or_default(),
                        probe.cleanup_attempts
                    ));
                    Some(format!("probe {} left in place: {error}", probe.key))
                } else {
                    Some(format!("cleaning up probe {}: {error}", probe.key))
                }
            }
        };
        (probe, problem)
    }

    /// Delete the probe's versions from the source and every destination it may have reached.
    /// `Ok(false)`: not yet, because the probe key also replicates to other destinations where
    /// it has not arrived (deleting the source now would fail that replication).
    async fn clean_up(
        &self,
        probe: &ProbeRecord,
        setup: Option<&ReplicationSetup>,
        clock: &RunClock,
    ) -> Result<bool, StoreError> {
        if !self.settings.segment.owns(&probe.key) {
            // A record that does not name one of our keys is never acted on.
            return Err(StoreError::Refused {
                operation: "DeleteObject",
                bucket: probe.source_bucket.clone(),
                detail: format!("{} is outside the canary segment", probe.key),
            });
        }
        let tags: Vec<(String, String)> = setup
            .and_then(|s| s.rules.iter().find(|r| r.id == probe.rule_id))
            .map(|r| r.filter.tags.clone())
            .unwrap_or_default();
        let others: Vec<BucketRef<'_>> = setup
            .map(|s| s.destinations_for(&probe.key, &tags))
            .unwrap_or_default()
            .into_iter()
            .filter(|other| *other != probe.destination_bucket)
            .map(|bucket| BucketRef {
                bucket,
                region: None,
            })
            .collect();
        if !others.is_empty() && clock.now() < probe.deadline {
            let arrived = join_all(
                others
                    .iter()
                    .map(|other| self.store.head(*other, &probe.key, None)),
            )
            .await;
            if !arrived.iter().all(|r| matches!(r, Ok(Some(_)))) {
                return Ok(false);
            }
        }
        let results = join_all(
            [source_ref(probe), destination_ref(probe)]
                .into_iter()
                .chain(others)
                .map(|bucket| self.store.delete_all_versions(bucket, &probe.key)),
        )
        .await;
        results.into_iter().try_for_each(|r| r.map(|_| ()))?;
        Ok(true)
    }

    /// Count the probes of one rule and destination into its health (optimistically, retrying
    /// on a concurrent write), then publish the pages that health owes.
    async fn update_health(
        &self,
        bucket: &str,
        destination: &str,
        rule_id: &str,
        probes: &[&ProbeRecord],
        clock: &RunClock,
        report: &mut BucketReport,
    ) -> bool {
        const ATTEMPTS: u32 = 4;
        let limit = self.settings.bad_probes_to_page;
        let expires_at = clock.wall_start + self.settings.ttl;
        for _ in 0..ATTEMPTS {
            let (stored, revision) = match self.ledger.health(bucket, destination, rule_id).await {
                Ok(Some((health, revision))) => (Some(health), Some(revision)),
                Ok(None) => (None, None),
                Err(e) => {
                    report.errors.push(e.to_string());
                    return false;
                }
            };
            let mut health = stored
                .clone()
                .unwrap_or_else(|| RuleHealth::new(bucket, destination, rule_id));
            for probe in probes {
                match health.count(probe, limit) {
                    Some(HealthChange::Opened) => {
                        let page = pages::incident_page(&health, probe, limit);
                        health.owed.push(page);
                    }
                    Some(HealthChange::Recovered { opened_at }) => {
                        health
                            .owed
                            .push(pages::recovery_notice(probe, opened_at, clock.now()));
                    }
                    None => {}
                }
            }
            let revision = if stored.as_ref() == Some(&health) {
                revision.unwrap_or(0)
            } else {
                match self.ledger.put_health(&health, revision, expires_at).await {
                    Ok(true) => revision.map_or(1, |r| r + 1),
                    Ok(false) => continue, // another run counted first: read again
                    Err(e) => {
                        report.errors.push(e.to_string());
                        return false;
                    }
                }
            };
            self.send_owed(health, revision, expires_at, report).await;
            return true;
        }
        report.errors.push(format!(
            "ledger: health of {bucket} -> {destination} (rule {rule_id}) kept changing under this run"
        ));
        false
    }

    async fn send_owed(
        &self,
        mut health: RuleHealth,
        revision: u64,
        expires_at: DateTime<Utc>,
        report: &mut BucketReport,
    ) {
        if health.owed.is_empty() {
            return;
        }
        let owed = std::mem::take(&mut health.owed);
        for page in owed {
            match self.notifier.publish(&page.to_page(&health)).await {
                Ok(()) => report.pages.push(page.subject.clone()),
                Err(e) => {
                    report
                        .errors
                        .push(format!("publishing \"{}\": {e}", page.subject));
                    health.owed.push(page);
                }
            }
        }
        // A crash between the publish and this write sends the page again next run: duplicates
        // are better than silence.
        if let Err(e) = self
            .ledger
            .put_health(&health, Some(revision), expires_at)
            .await
        {
            report.errors.push(e.to_string());
        }
    }
}

/// S3 reported the probe's replication as failed (a replication failure event in the ledger).
fn failed(probe: &mut ProbeRecord, reason: &str, at: DateTime<Utc>) {
    let meaning = catalog::explain(reason).meaning;
    probe.resolve(
        ProbeStatus::Failed,
        at,
        Some(format!("S3 reported failureReason {reason}: {meaning}")),
    );
}

fn source_ref(probe: &ProbeRecord) -> BucketRef<'_> {
    BucketRef {
        bucket: &probe.source_bucket,
        region: probe.source_region.as_deref(),
    }
}

fn destination_ref(probe: &ProbeRecord) -> BucketRef<'_> {
    BucketRef {
        bucket: &probe.destination_bucket,
        region: probe.destination_region.as_deref(),
    }
}

#[cfg(test)]
mod tests;
