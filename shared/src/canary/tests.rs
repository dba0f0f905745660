//! The canary's run logic against the fakes, in paused tokio time: polls, budgets, deadlines and
//! schedules take no real time.

use super::ports::{BucketFacts, DefaultEncryption, StoreError};
use super::probe::ProbeStatus;
use super::setup::{ReplicationRule, ReplicationSetup, RuleFilter};
use super::*;
use crate::clock::Clock;
use crate::delivery::page::Urgency;
use crate::fakes::{
    Arrival, FakeS3, InMemoryLedger, ProbePut, RecordedMeasurement, RecordingNotifier,
    RecordingProbeMetrics,
};
use chrono::TimeZone;
use std::sync::atomic::Ordering;

/// Wall time that follows tokio's (paused) clock, so records and latencies agree across runs.
struct TokioClock {
    wall: DateTime<Utc>,
    instant: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(self.instant.elapsed()).unwrap_or_default()
    }
}

struct World {
    s3: FakeS3,
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    metrics: RecordingProbeMetrics,
    clock: TokioClock,
    settings: CanarySettings,
    buckets: Vec<String>,
}

fn rule(id: &str, destination: &str) -> ReplicationRule {
    ReplicationRule {
        id: id.into(),
        priority: Some(1),
        enabled: true,
        filter: RuleFilter::default(),
        destination_bucket: destination.into(),
        destination_account: None,
        metrics_enabled: true,
        rtc_enabled: true,
        replicates_kms_objects: true,
    }
}

impl World {
    /// `src` replicating to `dst` by rule `dr`; replicas arrive after 2 s.
    fn new() -> Self {
        let world = World {
            s3: FakeS3::default(),
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            metrics: RecordingProbeMetrics::default(),
            clock: TokioClock {
                wall: Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap(),
                instant: Instant::now(),
            },
            settings: CanarySettings {
                deadline: chrono::Duration::seconds(240),
                latency_threshold: chrono::Duration::seconds(60),
                ..CanarySettings::default()
            },
            buckets: vec!["src".into()],
        };
        world.s3.add_bucket(
            "src",
            Some(ReplicationSetup {
                role: "role".into(),
                rules: vec![rule("dr", "dst")],
            }),
        );
        world.s3.add_bucket("dst", None);
        world
            .s3
            .set_arrival("dst", Arrival::After(Duration::from_secs(2)));
        world
    }

    async fn run(&self, run_id: &str) -> Result<RunReport, CanaryError> {
        let canary = Canary::new(
            &self.s3,
            &self.ledger,
            &self.notifier,
            &self.metrics,
            &self.clock,
            self.buckets.clone(),
            self.settings.clone(),
        );
        canary
            .handle(&format!(r#"{{"run_id": "{run_id}"}}"#), "request")
            .await
    }

    /// The schedule's gap between runs.
    async fn wait(&self, seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    fn pages(&self) -> Vec<(Urgency, String)> {
        self.notifier
            .pages()
            .iter()
            .map(|p| (p.urgency, p.subject().to_owned()))
            .collect()
    }

    fn page_kinds(&self) -> Vec<String> {
        self.notifier
            .pages()
            .iter()
            .map(|p| p.kind.clone())
            .collect()
    }
}

fn probes(report: &RunReport) -> Vec<(ProbeStatus, bool)> {
    report.buckets[0]
        .probes
        .iter()
        .map(|p| (p.status, p.carried_over))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn healthy_probe_is_timed_recorded_measured_and_cleaned_up() {
    let world = World::new();
    world.s3.put_plain("src", "data/keep-me");
    world.s3.put_plain("dst", "data/keep-me");
    let report = world.run("run-1").await.unwrap();
    assert_eq!(probes(&report), [(ProbeStatus::Arrived, false)]);
    let summary = &report.buckets[0].probes[0];
    let latency = summary.latency_ms.unwrap();
    assert!(latency.abs_diff(2000) <= 250, "{latency}");
    assert_eq!(summary.uncertainty_ms, Some(450));
    assert_eq!(summary.head_requests, 5); // at 0.45, 0.9, 1.35, 1.8 and 2.25 s
    assert_eq!(summary.key, "replmon-canary/dr/run-1");

    let records = world.ledger.probes();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, ProbeStatus::Arrived);
    assert!(records[0].cleaned);
    assert_eq!(records[0].latency_min_ms, Some(1800));
    assert_eq!(records[0].latency_max_ms, Some(2250));
    // Cleaned everywhere; the bucket's own objects untouched.
    assert_eq!(world.s3.keys("src"), ["data/keep-me"]);
    assert_eq!(world.s3.keys("dst"), ["data/keep-me"]);
    assert_eq!(
        world.metrics.recorded(),
        [RecordedMeasurement {
            source_bucket: "src".into(),
            destination_bucket: "dst".into(),
            rule_id: "dr".into(),
            success: true,
            latency_seconds: Some(2.025)
        }]
    );
    assert!(world.pages().is_empty(), "{:?}", world.pages());
    assert!(world.ledger.pending_probes("src").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_is_carried_over_and_resolved_with_bounds_later() {
    let world = World::new();
    world
        .s3
        .set_arrival("dst", Arrival::After(Duration::from_secs(100)));
    let report = world.run("run-1").await.unwrap();
    assert_eq!(probes(&report), [(ProbeStatus::Pending, false)]);
    assert_eq!(world.ledger.pending_probes("src").await.unwrap().len(), 1);
    assert_eq!(world.s3.keys("src"), ["replmon-canary/dr/run-1"]);
    assert_eq!(world.metrics.count(), 0);

    // Next run, 70 s after the first ended: the old probe has arrived (100 s, above the 60 s
    // threshold); the new one is pending.
    world.wait(70).await;
    let report = world.run("run-2").await.unwrap();
    let mut seen = probes(&report);
    seen.sort_by_key(|(_, carried)| *carried);
    assert_eq!(
        seen,
        [(ProbeStatus::Pending, false), (ProbeStatus::Slow, true)]
    );
    let slow = world
        .ledger
        .probes()
        .into_iter()
        .find(|p| p.run_id == "run-1")
        .unwrap();
    let (lower, upper) = (slow.latency_min_ms.unwrap(), slow.latency_max_ms.unwrap());
    // The last miss was the last poll that fitted run 1's 45 s budget; the hit at run 2.
    assert!((30_000..=45_000).contains(&lower), "{lower}");
    assert!((100_000..=120_000).contains(&upper), "{upper}");
    assert!(lower <= 100_000 && 100_000 <= upper);
    assert!(slow.cleaned);
    // One slow probe does not page.
    assert!(world.pages().is_empty());
    assert_eq!(
        world
            .ledger
            .rule_health("src", "dst", "dr")
            .unwrap()
            .consecutive_bad,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn stuck_replication_pages_once_after_two_bad_probes_then_recovers() {
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Stuck);
    world.run("run-1").await.unwrap();
    world.wait(300).await;
    let report = world.run("run-2").await.unwrap();
    assert!(probes(&report).contains(&(ProbeStatus::Stalled, true)));
    assert!(world.pages().is_empty(), "one stalled probe must not page");
    world.wait(300).await;
    world.run("run-3").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-stalled"]);
    let page = &world.notifier.pages()[0];
    assert_eq!(page.urgency, Urgency::Page);
    assert!(
        page.subject() == "[CRITICAL] S3 canary STALLED: src -> dst (rule dr)",
        "{}",
        page.subject()
    );
    assert!(page.body().contains("Source ReplicationStatus: PENDING"));
    assert!(page.body().contains("Bad probes in a row: 2"));
    assert_eq!(
        page.attributes()
            .iter()
            .find(|(k, _)| k == "destination_bucket")
            .unwrap()
            .1,
        "dst"
    );

    // Still stuck: no second page.
    world.wait(300).await;
    world.run("run-4").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-stalled"]);

    // Replication works again: the new probe arrives, a recovery notice goes out.
    world
        .s3
        .set_arrival("dst", Arrival::After(Duration::from_secs(1)));
    world.wait(300).await;
    world.run("run-5").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-stalled", "canary-recovered"]);
    let notice = &world.notifier.pages()[1];
    assert_eq!(notice.urgency, Urgency::Notice);
    assert!(notice.body().contains("Incident lasted"));
    // The stalled probes were cleaned up too (the stuck ones never reached dst).
    assert!(
        world.s3.keys("src").is_empty(),
        "{:?}",
        world.s3.keys("src")
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_replication_pages_at_once() {
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Fails);
    let report = world.run("run-1").await.unwrap();
    assert_eq!(probes(&report), [(ProbeStatus::Failed, false)]);
    assert_eq!(world.page_kinds(), ["canary-failed"]);
    assert!(world.notifier.pages()[0]
        .body()
        .contains("ReplicationStatus is FAILED"));
    assert!(
        !world.metrics.recorded()[0].success,
        "a failed probe is a failed measurement"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_destination_is_cannot_verify_and_other_buckets_go_on() {
    let mut world = World::new();
    world.s3.add_bucket(
        "other",
        Some(ReplicationSetup {
            role: "role".into(),
            rules: vec![rule("or", "other-dst")],
        }),
    );
    world.s3.add_bucket("other-dst", None);
    world.buckets.push("other".into());
    world.s3.break_bucket(
        "dst",
        Some(StoreError::Denied {
            operation: "HeadObject",
            bucket: "dst".into(),
            detail: "AccessDenied".into(),
        }),
    );
    let report = world.run("run-1").await.unwrap();
    assert_eq!(probes(&report), [(ProbeStatus::Unverifiable, false)]);
    assert_eq!(report.buckets[1].probes[0].status, ProbeStatus::Arrived);
    // Gave up after three denied HEADs instead of spending the whole budget.
    assert_eq!(world.s3.heads("dst"), 3);
    world.wait(60).await;
    world.run("run-2").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-unverifiable"]);
    assert!(world.notifier.pages()[0].body().contains("AccessDenied"));
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_schedule_writes_no_second_probe() {
    let world = World::new();
    world.run("run-1").await.unwrap();
    let again = world.run("run-1").await.unwrap();
    assert!(again.buckets[0].repeated_run);
    assert!(again.buckets[0].probes.is_empty());
    assert_eq!(world.s3.puts().len(), 1);
    assert_eq!(world.ledger.probes().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn audit_findings_are_noticed_once_per_period() {
    let world = World::new();
    world.s3.add_bucket(
        "src",
        Some(ReplicationSetup {
            role: "role".into(),
            rules: vec![ReplicationRule {
                metrics_enabled: false,
                ..rule("dr", "dst")
            }],
        }),
    );
    let report = world.run("run-1").await.unwrap();
    assert_eq!(report.buckets[0].notices, ["metrics-off#dr#dst"]);
    world.wait(3600).await;
    let report = world.run("run-2").await.unwrap();
    assert!(report.buckets[0].notices.is_empty());
    world.wait(86_400).await;
    let report = world.run("run-3").await.unwrap();
    assert_eq!(report.buckets[0].notices, ["metrics-off#dr#dst"]);
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 2);
    assert!(pages.iter().all(|p| p.urgency == Urgency::Notice));
    assert!(pages[0].subject().contains("replication metrics off"));
}

#[tokio::test(start_paused = true)]
async fn probes_follow_rule_filters_and_encryption() {
    let world = World::new();
    let tags = vec![("replicate".to_owned(), "yes".to_owned())];
    world.s3.add_bucket(
        "src",
        Some(ReplicationSetup {
            role: "role".into(),
            rules: vec![ReplicationRule {
                filter: RuleFilter {
                    prefix: "logs/".into(),
                    tags: tags.clone(),
                },
                ..rule("dr", "dst")
            }],
        }),
    );
    world.s3.set_facts(
        "src",
        BucketFacts {
            region: Some("us-east-1".into()),
            versioning: super::ports::Versioning::Enabled,
            encryption: Some(DefaultEncryption::Kms {
                algorithm: "aws:kms".into(),
                key_id: Some("alias/dr".into()),
            }),
            replication_events_configured: Some(true),
        },
    );
    let report = world.run("run-1").await.unwrap();
    // The fake replicates only what the filter selects: arrival proves key and tags match.
    assert_eq!(probes(&report), [(ProbeStatus::Arrived, false)]);
    assert_eq!(
        world.s3.puts(),
        [ProbePut {
            bucket: "src".into(),
            key: "logs/replmon-canary/dr/run-1".into(),
            tags,
            encrypted: true
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn unreadable_configuration_pages_after_two_runs_and_recovers() {
    let world = World::new();
    world.s3.fail_replication_reads.store(2, Ordering::SeqCst);
    let report = world.run("run-1").await.unwrap();
    assert!(report.buckets[0].problems[0].contains("GetBucketReplication"));
    world.wait(60).await;
    world.run("run-2").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-unverifiable"]);
    world.wait(60).await;
    world.run("run-3").await.unwrap();
    assert_eq!(
        world.page_kinds(),
        ["canary-unverifiable", "canary-recovered"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_page_that_could_not_be_sent_is_sent_by_the_next_run() {
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Fails);
    world.notifier.fail_publishes.store(1, Ordering::SeqCst);
    let error = world.run("run-1").await.unwrap_err();
    assert!(error.to_string().contains("publishing"), "{error}");
    assert!(world.pages().is_empty());
    assert_eq!(
        world
            .ledger
            .rule_health("src", "dst", "dr")
            .unwrap()
            .owed
            .len(),
        1
    );
    world.wait(60).await;
    world.run("run-2").await.unwrap();
    // The owed page, once; the second failure does not open a second incident.
    assert_eq!(world.page_kinds(), ["canary-failed"]);
    assert!(world
        .ledger
        .rule_health("src", "dst", "dr")
        .unwrap()
        .owed
        .is_empty());
}

/// Owed pages another run has claimed (and may be sending right now) are left to it while its
/// lease holds; a run that finds the lease run out sends them, once. Pages are never sent twice
/// by two runs at once.
#[tokio::test(start_paused = true)]
async fn owed_pages_another_run_is_sending_are_left_to_it_until_its_lease_ends() {
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Fails);
    world.notifier.fail_publishes.store(1, Ordering::SeqCst);
    world.run("run-1").await.unwrap_err();
    let (mut health, revision) = world
        .ledger
        .health("src", "dst", "dr")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (health.owed.len(), health.owed_claimed_at),
        (1, None),
        "released"
    );
    // Another run claims them and is still sending (or died).
    health.owed_claimed_at = Some(world.clock.now());
    let expires = world.clock.now() + chrono::Duration::days(1);
    assert!(world
        .ledger
        .put_health(&health, Some(revision), expires)
        .await
        .unwrap());
    world.wait(60).await;
    world.run("run-2").await.unwrap();
    assert!(
        world.pages().is_empty(),
        "left to the run that claimed them"
    );
    assert_eq!(
        world
            .ledger
            .rule_health("src", "dst", "dr")
            .unwrap()
            .owed
            .len(),
        1
    );
    world.wait(120).await;
    world.run("run-3").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-failed"]);
    let health = world.ledger.rule_health("src", "dst", "dr").unwrap();
    assert!(health.owed.is_empty() && health.owed_claimed_at.is_none());
    world.wait(60).await;
    world.run("run-4").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-failed"], "sent once");
}

#[tokio::test(start_paused = true)]
async fn a_failed_ledger_write_fails_the_invocation_and_the_probe_is_kept_pending() {
    let world = World::new();
    world
        .s3
        .set_arrival("dst", Arrival::After(Duration::from_secs(300)));
    world.ledger.fail_records.store(1, Ordering::SeqCst);
    let error = world.run("run-1").await.unwrap_err();
    assert!(error.to_string().contains("save probe"), "{error}");
    // The first save failed, the save after polling wrote the pending probe.
    assert_eq!(world.ledger.pending_probes("src").await.unwrap().len(), 1);
}

#[test]
fn triggers() {
    let scheduled = r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-11-23T03:00:00Z","region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/replmon-canary"],"detail":{}}"#;
    assert_eq!(
        Trigger::parse(scheduled, "req").unwrap(),
        Trigger {
            run_id: "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa".into(),
            buckets: None
        }
    );
    let scheduler = r#"{"run_id": "exec-1", "buckets": ["a", " "]}"#;
    assert_eq!(
        Trigger::parse(scheduler, "req").unwrap(),
        Trigger {
            run_id: "exec-1".into(),
            buckets: Some(vec!["a".into()])
        }
    );
    assert_eq!(Trigger::parse("{}", "req").unwrap().run_id, "req");
    assert!(matches!(
        Trigger::parse("[1]", "req"),
        Err(CanaryError::BadTrigger(_))
    ));
    assert!(Trigger::parse("not json", "req").is_err());
}

#[tokio::test(start_paused = true)]
async fn an_outcome_whose_health_write_failed_is_counted_by_the_next_run() {
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Fails);
    // Both health writes of the run fail: the bucket's configuration check, then the rule's.
    world.ledger.fail_health.store(2, Ordering::SeqCst);
    let error = world.run("run-1").await.unwrap_err();
    assert!(error.to_string().contains("canary health"), "{error}");
    assert!(world.pages().is_empty());
    let pending = world.ledger.pending_probes("src").await.unwrap();
    assert_eq!(pending.len(), 1, "kept until counted");
    assert_eq!(pending[0].status, ProbeStatus::Failed);
    assert!(!pending[0].counted);
    // A retry of the same run (Lambda's, later) counts it: one page; the next run's failure is
    // part of the same open incident.
    world.wait(200).await;
    let retry = world.run("run-1").await.unwrap();
    assert!(retry.buckets[0].repeated_run);
    assert_eq!(world.page_kinds(), ["canary-failed"]);
    world.run("run-2").await.unwrap();
    assert_eq!(world.page_kinds(), ["canary-failed"]);
    assert!(world.ledger.pending_probes("src").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cleanup_denied_forever_is_abandoned_and_never_recounted() {
    let world = World::new();
    world.s3.deny_deletes("dst");
    for run in 1..=8 {
        let report = world.run(&format!("run-{run}")).await.unwrap();
        assert!(report.buckets[0]
            .problems
            .iter()
            .all(|p| p.contains("probe")));
        world.wait(300).await;
    }
    // Every probe arrived on time: nothing bad was counted, however often it was retried.
    let health = world.ledger.rule_health("src", "dst", "dr").unwrap();
    assert_eq!(health.consecutive_bad, 0);
    assert!(world.pages().is_empty());
    // After five attempts a probe is given up (and says so); the backlog stays bounded.
    let records = world.ledger.probes();
    let first = records.iter().find(|p| p.run_id == "run-1").unwrap();
    assert!(first.cleaned && first.counted);
    assert!(first
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("cleanup abandoned after 5 attempts"));
    assert!(world.ledger.pending_probes("src").await.unwrap().len() <= 5);
}

#[tokio::test(start_paused = true)]
async fn overlapping_runs_leave_each_other_s_probes_alone() {
    let world = World::new();
    world
        .s3
        .set_arrival("dst", Arrival::After(Duration::from_secs(100)));
    let (a, b) = futures::join!(world.run("run-a"), world.run("run-b"));
    for report in [a.unwrap(), b.unwrap()] {
        assert_eq!(
            probes(&report),
            [(ProbeStatus::Pending, false)],
            "{report:#?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_is_not_deleted_while_it_is_still_on_its_way_to_another_destination() {
    let world = World::new();
    // Two rules select every key: a probe written for one also replicates to the other.
    world.s3.add_bucket(
        "src",
        Some(ReplicationSetup {
            role: "role".into(),
            rules: vec![rule("dr", "dst"), rule("dr2", "dst2")],
        }),
    );
    world.s3.add_bucket("dst2", None);
    world
        .s3
        .set_arrival("dst2", Arrival::After(Duration::from_secs(100)));
    world.run("run-1").await.unwrap();
    let key = "replmon-canary/dr/run-1";
    assert!(world.s3.keys("src").contains(&key.to_owned()), "deferred");
    world.wait(120).await;
    world.run("run-2").await.unwrap();
    for bucket in ["src", "dst", "dst2"] {
        assert!(
            !world.s3.keys(bucket).contains(&key.to_owned()),
            "{bucket}: {:?}",
            world.s3.keys(bucket)
        );
    }
}

/// SNS refusing pages for a long time must not grow a health item toward DynamoDB's 400 KB
/// limit: the oldest owed pages are given up and counted, and the next page that goes out says
/// how many.
#[tokio::test(start_paused = true)]
async fn owed_pages_are_bounded_and_the_next_page_says_how_many_were_given_up() {
    use crate::canary::probe::{OwedPage, MAX_OWED_PAGES};
    let mut health = RuleHealth::new("src", "dst", "dr");
    for i in 0..30 {
        health.owe(OwedPage {
            severity: crate::severity::Severity::High,
            notice: false,
            kind: "canary-failed".into(),
            subject: format!("page {i}"),
            body: "x".repeat(100 * 1024),
        });
    }
    assert_eq!(health.owed.len(), MAX_OWED_PAGES);
    assert_eq!(health.owed_dropped, 30 - MAX_OWED_PAGES as u32);
    assert_eq!(
        health.owed[0].subject,
        format!("page {}", 30 - MAX_OWED_PAGES)
    );
    let size = serde_json::to_string(&health).unwrap().len();
    assert!(size < 100 * 1024, "{size} bytes");

    // Through a run: the health owes what it owed, the publish works again.
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Fails);
    world.notifier.fail_publishes.store(1, Ordering::SeqCst);
    world.run("run-1").await.unwrap_err();
    let (mut stored, revision) = world
        .ledger
        .health("src", "dst", "dr")
        .await
        .unwrap()
        .unwrap();
    stored.owed_dropped = 5;
    let expires = world.clock.now() + chrono::Duration::days(1);
    assert!(world
        .ledger
        .put_health(&stored, Some(revision), expires)
        .await
        .unwrap());
    world.wait(60).await;
    world.run("run-2").await.unwrap();
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 1);
    assert!(
        pages[0].body().contains("5 earlier canary message(s)"),
        "{}",
        pages[0].body()
    );
    assert_eq!(
        world
            .ledger
            .rule_health("src", "dst", "dr")
            .unwrap()
            .owed_dropped,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_recovered_rule_is_handed_to_the_redrive_function_in_automatic_mode() {
    for automatic in [false, true] {
        let mut world = World::new();
        world.settings.hand_over_redrives = automatic;
        world.s3.set_arrival("dst", Arrival::Stuck);
        for run in 1..=3 {
            world.run(&format!("run-{run}")).await.unwrap();
            world.wait(300).await;
        }
        assert!(
            world.ledger.hand_overs().is_empty(),
            "nothing recovered yet"
        );
        world
            .s3
            .set_arrival("dst", Arrival::After(Duration::from_secs(1)));
        world.run("run-4").await.unwrap();
        assert_eq!(world.page_kinds(), ["canary-stalled", "canary-recovered"]);
        let handed = world.ledger.hand_overs();
        if automatic {
            assert_eq!(handed.len(), 1);
            let probe_at = world
                .ledger
                .rule_health("src", "dst", "dr")
                .unwrap()
                .last_probe_at;
            assert_eq!(Some(handed[0].probe_at), probe_at);
            assert_eq!(
                (
                    handed[0].destination_bucket.as_str(),
                    handed[0].rule_id.as_str()
                ),
                ("dst", "dr")
            );
        } else {
            assert!(handed.is_empty(), "off by default");
        }
        // A good probe after a good one is no recovery: nothing more is handed over.
        world.wait(300).await;
        world.run("run-5").await.unwrap();
        assert_eq!(world.ledger.hand_overs().len(), usize::from(automatic));
    }
}

#[tokio::test(start_paused = true)]
async fn every_counted_probe_is_in_its_day_s_roll_up_once_whatever_fails() {
    let world = World::new();
    let day = world.clock.now().date_naive();
    let rollup = || async {
        world
            .ledger
            .daily_rollup("src", "dst", "dr", day)
            .await
            .unwrap()
            .map(|(r, _)| r)
    };
    // The roll-up write fails: the run fails and the probe stays pending, but health counts it
    // (a page would go out): the report's roll-up never holds up paging.
    world.ledger.fail_rollup.store(1, Ordering::SeqCst);
    let error = world.run("run-1").await.unwrap_err();
    assert!(error.to_string().contains("roll-up"), "{error}");
    assert!(rollup().await.is_none());
    let pending = world.ledger.pending_probes("src").await.unwrap();
    assert!(pending[0].counted && !pending[0].rolled_up, "{pending:?}");
    // Lambda's retry of the run rolls it up, and counts nothing twice.
    world.wait(200).await;
    world.run("run-1").await.unwrap();
    assert_eq!(rollup().await.unwrap().marks.len(), 1);
    assert!(world.ledger.pending_probes("src").await.unwrap().is_empty());
    // The health write fails after the roll-up was written: the retry counts health, and the
    // roll-up keeps each probe once.
    world.wait(200).await;
    // (Both health writes of the run fail: the bucket's configuration check, then the rule's.)
    world.ledger.fail_health.store(2, Ordering::SeqCst);
    let error = world.run("run-2").await.unwrap_err();
    assert!(error.to_string().contains("canary health"), "{error}");
    assert_eq!(rollup().await.unwrap().marks.len(), 2);
    let pending = world.ledger.pending_probes("src").await.unwrap();
    assert!(pending[0].rolled_up && !pending[0].counted, "{pending:?}");
    world.wait(200).await;
    world.run("run-2").await.unwrap();
    assert!(world.ledger.pending_probes("src").await.unwrap().is_empty());
    let rolled = rollup().await.unwrap();
    assert_eq!(rolled.outcomes.arrived, 2, "{rolled:?}");
    assert_eq!(rolled.marks.len(), 2);
    assert_eq!(rolled.latency.count, 2);
    assert_eq!(rolled.within_target, 2);
    assert_eq!(rolled.threshold_ms, 60_000);
    assert_eq!(rolled.bad_probes_to_page, world.settings.bad_probes_to_page);
    assert!(rolled.latency.max_ms >= 2_000, "replicas arrive after 2 s");
    let health = world
        .ledger
        .health("src", "dst", "dr")
        .await
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(health.counted.len(), 2, "health counted each once too");
}

#[tokio::test(start_paused = true)]
async fn a_roll_up_that_cannot_be_written_never_holds_up_a_page() {
    let world = World::new();
    world.s3.set_arrival("dst", Arrival::Fails);
    world.ledger.fail_rollup.store(100, Ordering::SeqCst);
    let error = world.run("run-1").await.unwrap_err();
    assert!(error.to_string().contains("roll-up"), "{error}");
    assert_eq!(world.page_kinds(), ["canary-failed"], "paged all the same");
    let pending = world.ledger.pending_probes("src").await.unwrap();
    assert_eq!(pending.len(), 1, "kept until it is rolled up");
    assert!(pending[0].counted);
}
