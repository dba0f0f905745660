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
pub mod rollup;
pub mod setup;

mod arrival;
mod outcome;
mod owed;
mod trigger;
use outcome::{destination_ref, failed, source_ref};
pub use trigger::Trigger;

use crate::catalog;
use crate::clock::Clock;
use crate::delivery::outbox::{deliver, AtRevision, Claimed, Outbox};
use crate::delivery::page::{Notifier, Page};
use audit::{audit, AuditRecord, DestinationFacts};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use measure::{millis, LatencyBounds, PollSchedule};
use owed::{AuditNotices, HealthPages};
use ports::{
    BucketFacts, BucketRef, CanaryStore, ObjectStore, ProbeMeasurement, ProbeMetrics, ProbeObject,
    StoreError,
};
use probe::{HealthChange, ProbeRecord, ProbeStatus, RuleHealth};
use rollup::DailyRollup;
use serde::Serialize;
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
    /// Daily roll-ups (what `replmon report` reads) expire this long after their day.
    pub rollup_retention: chrono::Duration,
    /// A run may outlast its budget by this much (cleanup, records, pages): probes younger than
    /// budget + this may belong to a run still going, and other runs leave them alone.
    pub overlap_margin: chrono::Duration,
    /// `REPLMON_AUTO_REDRIVE`: a rule that recovers is handed to the redrive function.
    pub hand_over_redrives: bool,
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
            rollup_retention: chrono::Duration::days(400),
            overlap_margin: chrono::Duration::seconds(60),
            hand_over_redrives: false,
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
            rolled_up: false,
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
        if let Err(e) = self
            .ledger
            .note_findings(&record, clock.wall_start + self.settings.rollup_retention)
            .await
        {
            report.errors.push(e.to_string());
        }
        for finding in findings {
            let outbox = AuditNotices {
                ledger: &self.ledger,
                source_bucket: bucket,
                now: clock.now(),
                period: self.settings.audit_period,
            };
            let claim = match outbox.claim(&finding.id).await {
                Ok(Claimed::Taken(claim)) => claim,
                // Noticed within the audit period already.
                Ok(Claimed::Changed(_) | Claimed::Held(_)) => continue,
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
            };
            let page = pages::audit_notice(bucket, &finding);
            let delivered = deliver(
                &outbox,
                &self.notifier,
                &claim,
                std::slice::from_ref(&page),
                &finding.id,
            )
            .await;
            match delivered.error {
                None => report.notices.push(finding.id),
                Some(e) => report
                    .errors
                    .push(format!("publishing notice {}: {e}", finding.id)),
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
            rolled_up: false,
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
}

#[cfg(test)]
mod tests;
