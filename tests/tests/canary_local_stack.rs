//! The canary with its real adapters (S3, DynamoDB, SNS) against the local moto server, with the
//! replication simulator standing in for S3 replication: healthy, slow (carried over to the next
//! run), paused, failed (the failure event goes through the replication-events monitor into the
//! ledger, where the canary reads it), and a destination that cannot be reached.

use anyhow::Result;
use futures::future::BoxFuture;
use replmon_shared::aws::{DynamoDbLedger, S3ObjectStore, SnsNotifier};
use replmon_shared::canary::ports::{
    BucketFacts, BucketRef, CanaryStore, ObjectFacts, ObjectStore, ProbeObject, StoreError,
};
use replmon_shared::canary::probe::ProbeStatus;
use replmon_shared::canary::setup::ReplicationSetup;
use replmon_shared::canary::{Canary, CanarySettings, RunReport, Trigger};
use replmon_shared::clock::SystemClock;
use replmon_shared::fakes::RecordingProbeMetrics;
use replmon_tests::replication_sim::{Delay, FailureSink, ReplicationSimulator, SimulatorSettings};
use replmon_tests::{
    monitor_on_stack, sdk_config, AwsMonitor, MotoServer, ReceivedPage, Stack, StackNames,
};
use std::sync::Arc;
use std::time::Duration;

struct Local {
    _moto: MotoServer,
    stack: Stack,
    store: S3ObjectStore,
    ledger: DynamoDbLedger,
    notifier: SnsNotifier,
    metrics: RecordingProbeMetrics,
    monitor: Arc<AwsMonitor>,
    sdk: aws_config::SdkConfig,
}

/// Short budgets and deadlines so a scenario of several runs takes seconds.
fn settings() -> CanarySettings {
    CanarySettings {
        budget: Duration::from_secs(4),
        deadline: chrono::Duration::seconds(6),
        latency_threshold: chrono::Duration::seconds(5),
        // Runs here follow each other within seconds and never overlap.
        overlap_margin: chrono::Duration::seconds(1),
        ..CanarySettings::default()
    }
}

async fn local() -> Local {
    local_with(StackNames::default()).await
}

async fn local_with(names: StackNames) -> Local {
    let (moto, stack, monitor) = monitor_on_stack(names).await.expect("local stack");
    let sdk = sdk_config(&moto.endpoint()).await;
    Local {
        store: S3ObjectStore::new(&sdk),
        ledger: DynamoDbLedger::new(&sdk, &stack.names.table),
        notifier: SnsNotifier::new(&sdk, &stack.topic_arn),
        metrics: RecordingProbeMetrics::default(),
        monitor: Arc::new(monitor),
        _moto: moto,
        stack,
        sdk,
    }
}

impl Local {
    async fn simulator(&self, settings: SimulatorSettings) -> ReplicationSimulator {
        ReplicationSimulator::start(
            self.stack.s3.clone(),
            vec![self.stack.names.source_bucket.clone()],
            settings,
        )
        .await
    }

    async fn run_with<S: ObjectStore>(&self, store: &S, buckets: &[&str], run: &str) -> RunReport {
        let canary = Canary::new(
            store,
            &self.ledger,
            &self.notifier,
            &self.metrics,
            SystemClock,
            buckets.iter().map(|b| b.to_string()).collect(),
            settings(),
        );
        canary
            .run(&Trigger {
                run_id: run.into(),
                buckets: None,
            })
            .await
    }

    async fn run(&self, run: &str) -> RunReport {
        let source = self.stack.names.source_bucket.clone();
        let report = self.run_with(&self.store, &[&source], run).await;
        assert!(report.buckets[0].errors.is_empty(), "{report:#?}");
        report
    }

    /// Pages and notices, without the audit notices (the stack's rule has no metrics nor RTC).
    async fn pages(&self) -> Vec<ReceivedPage> {
        let mut pages = self.stack.drain_pages().await.expect("pages");
        pages.retain(|p| p.attribute("kind") != "canary-audit");
        pages
    }

    async fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .stack
            .s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .expect("list");
        out.versions()
            .iter()
            .filter_map(|v| v.key().map(str::to_owned))
            .chain(
                out.delete_markers()
                    .iter()
                    .filter_map(|m| m.key().map(str::to_owned)),
            )
            .collect()
    }
}

fn statuses(report: &RunReport) -> Vec<(ProbeStatus, bool)> {
    let mut seen: Vec<_> = report.buckets[0]
        .probes
        .iter()
        .map(|p| (p.status, p.carried_over))
        .collect();
    seen.sort_by_key(|(_, carried)| *carried);
    seen
}

/// Same-region replication with SSE-KMS on both buckets: the same code path, one region. The
/// probe arrives, is cleaned up on both sides, and S3's latency metric is where the replica is
/// (here, the one region).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_region_replication_is_timed_and_its_metrics_are_in_that_region() {
    let local = local_with(StackNames::default().same_region()).await;
    let names = local.stack.names.clone();
    assert_eq!(names.source_region, names.replica_region);
    let sim = local
        .simulator(SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(800)),
            metrics: Some(local.sdk.clone()),
            ..Default::default()
        })
        .await;
    let report = local.run("run-1").await;
    assert_eq!(statuses(&report), [(ProbeStatus::Arrived, false)]);
    sim.stop().await;
    assert!(sim.copy_errors().is_empty(), "{:?}", sim.copy_errors());
    assert!(local.keys(&names.source_bucket).await.is_empty());
    assert!(local.keys(&names.replica_bucket).await.is_empty());
    let latency = replmon_tests::regions::cloudwatch_in(&local.sdk, &names.replica_region)
        .list_metrics()
        .namespace("AWS/S3")
        .metric_name("ReplicationLatency")
        .send()
        .await
        .expect("list metrics");
    assert_eq!(latency.metrics().len(), 1, "{latency:?}");
    assert!(local.pages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_replication_is_timed_within_its_bounds_and_cleaned_up() {
    let local = local().await;
    let sim = local
        .simulator(SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(1500)),
            ..Default::default()
        })
        .await;
    let report = local.run("run-1").await;
    assert_eq!(statuses(&report), [(ProbeStatus::Arrived, false)]);
    let probe = &report.buckets[0].probes[0];

    // The simulator knows when the replica became visible; the canary's bounds must hold it.
    let copies = sim.replicated();
    assert_eq!(copies.len(), 1, "{copies:#?}");
    let records = local
        .stack
        .partition(&format!("PROBE#{}", local.stack.names.source_bucket))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["status"], "ARRIVED");
    assert_eq!(record["cleaned"], "true");
    let put_at: chrono::DateTime<chrono::Utc> = record["put_at"].parse().unwrap();
    let visible_ms = (copies[0].visible_at - put_at).num_milliseconds();
    let lower: i64 = record["latency_min_ms"].parse().unwrap();
    let upper: i64 = record["latency_max_ms"].parse().unwrap();
    // The copy was visible at or before `visible_at`, and after the PUT + the 1.5 s delay.
    assert!(
        lower <= visible_ms && 1500 <= upper,
        "{lower} {visible_ms} {upper}"
    );
    assert!(upper - lower <= 600, "uncertainty {lower}..{upper}");
    assert_eq!(probe.latency_ms.unwrap() as i64, (lower + upper) / 2);

    // The day's roll-up (what `replmon report` reads) has the probe once, with its latency.
    let names = &local.stack.names;
    let (rollup, _) = local
        .ledger
        .daily_rollup(
            &names.source_bucket,
            &names.replica_bucket,
            &names.rule_id,
            put_at.date_naive(),
        )
        .await
        .unwrap()
        .expect("the day's roll-up");
    assert_eq!(rollup.outcomes.arrived, 1);
    assert_eq!(rollup.marks.len(), 1);
    assert_eq!(rollup.latency.max_ms, probe.latency_ms.unwrap());
    assert_eq!(rollup.within_target, 1);

    assert!(local
        .keys(&local.stack.names.source_bucket)
        .await
        .is_empty());
    assert!(local
        .keys(&local.stack.names.replica_bucket)
        .await
        .is_empty());
    assert_eq!(local.metrics.count(), 1);
    assert!(local.pages().await.is_empty());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_replication_is_carried_over_and_resolved_with_bounds_by_the_next_run() {
    let local = local().await;
    let sim = local
        .simulator(SimulatorSettings {
            delay: Delay::Fixed(Duration::from_secs(7)),
            ..Default::default()
        })
        .await;
    let report = local.run("run-1").await;
    assert_eq!(statuses(&report), [(ProbeStatus::Pending, false)]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = local.run("run-2").await;
    let statuses = statuses(&report);
    assert_eq!(statuses[1], (ProbeStatus::Slow, true), "{statuses:?}");
    let slow = report.buckets[0]
        .probes
        .iter()
        .find(|p| p.carried_over)
        .unwrap();
    let latency = slow.latency_ms.unwrap();
    let uncertainty = slow.uncertainty_ms.unwrap();
    assert!(
        latency.abs_diff(7000) <= uncertainty / 2 + 500,
        "{latency} ± {uncertainty}"
    );
    // One slow probe does not page.
    assert!(local.pages().await.is_empty());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replication_pages_missing_after_two_probes_then_recovers() {
    let local = local().await;
    let source = local.stack.names.source_bucket.clone();
    let sim = local
        .simulator(SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(300)),
            ..Default::default()
        })
        .await;
    sim.pause(&source);
    local.run("run-1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = local.run("run-2").await;
    assert!(
        statuses(&report).contains(&(ProbeStatus::Missing, true)),
        "{report:#?}"
    );
    assert!(
        local.pages().await.is_empty(),
        "one missing probe must not page"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    local.run("run-3").await;
    let pages = local.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].attribute("kind"), "canary-missing");
    assert_eq!(pages[0].attribute("urgency"), "page");
    assert_eq!(pages[0].attribute("severity"), "critical");
    assert!(pages[0].subject.contains("MISSING"), "{}", pages[0].subject);
    assert!(pages[0].message.contains("Bad probes in a row: 2"));

    sim.resume(&source);
    let report = local.run("run-4").await;
    assert!(
        statuses(&report).contains(&(ProbeStatus::Arrived, false)),
        "{report:#?}"
    );
    let pages = local.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].attribute("kind"), "canary-recovered");
    assert_eq!(pages[0].attribute("urgency"), "notice");
    sim.stop().await;
}

/// Hands the simulator's failure events to the replication-events monitor, as S3 would.
struct MonitorSink(Arc<AwsMonitor>);

impl FailureSink for MonitorSink {
    fn deliver<'a>(&'a self, event: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        let (monitor, event) = (self.0.clone(), event.clone());
        // The monitor's future is not `Send` for every lifetime the sink's signature asks for;
        // a blocking thread drives it on the same runtime instead.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                tokio::runtime::Handle::current().block_on(monitor.handle_value(&event))
            })
            .await??;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_replication_pages_at_once_with_the_reason_from_the_ledger() {
    let local = local().await;
    let source = local.stack.names.source_bucket.clone();
    let sim = local
        .simulator(SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(500)),
            failure_sink: Some(Arc::new(MonitorSink(local.monitor.clone()))),
            ..Default::default()
        })
        .await;
    sim.fail_matching(&source, "replmon-canary/", "DstKmsKeyNotFound");
    let report = local.run("run-1").await;
    assert_eq!(statuses(&report), [(ProbeStatus::Failed, false)]);
    // Found in the ledger while polling, before the 4 s budget (8 looks) ran out.
    let looks = report.buckets[0].probes[0].head_requests;
    assert!(looks < 8, "{looks} HEADs");
    let pages = local.pages().await;
    let kinds: Vec<&str> = pages.iter().map(|p| p.attribute("kind")).collect();
    // The replication-events page for the object, and the canary's own page for the rule.
    assert!(kinds.contains(&"canary-failed"), "{kinds:?}");
    assert!(kinds.contains(&"replication-failure"), "{kinds:?}");
    let canary_page = pages
        .iter()
        .find(|p| p.attribute("kind") == "canary-failed")
        .unwrap();
    assert!(
        canary_page
            .message
            .contains("failureReason DstKmsKeyNotFound"),
        "{}",
        canary_page.message
    );
    assert!(
        local.keys(&source).await.is_empty(),
        "failed probes are cleaned up too"
    );
    sim.stop().await;
}

/// Sends every call for one bucket to a store that cannot connect, like a destination region
/// that does not answer; the rest to the local stack.
struct OneBucketUnreachable<'a> {
    local: &'a S3ObjectStore,
    dead: S3ObjectStore,
    bucket: String,
}

impl OneBucketUnreachable<'_> {
    fn pick(&self, bucket: &str) -> &S3ObjectStore {
        if bucket == self.bucket {
            &self.dead
        } else {
            self.local
        }
    }
}

impl ObjectStore for OneBucketUnreachable<'_> {
    async fn replication(
        &self,
        bucket: BucketRef<'_>,
    ) -> Result<Option<ReplicationSetup>, StoreError> {
        self.pick(bucket.bucket).replication(bucket).await
    }
    async fn facts(&self, bucket: &str, with: bool) -> Result<BucketFacts, StoreError> {
        self.pick(bucket).facts(bucket, with).await
    }
    async fn put(
        &self,
        bucket: BucketRef<'_>,
        object: ProbeObject<'_>,
    ) -> Result<Option<String>, StoreError> {
        self.pick(bucket.bucket).put(bucket, object).await
    }
    async fn head(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<ObjectFacts>, StoreError> {
        self.pick(bucket.bucket).head(bucket, key, version).await
    }
    async fn delete_probe(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<u32, StoreError> {
        self.pick(bucket.bucket)
            .delete_probe(bucket, key, version_id)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_destination_is_cannot_verify_and_does_not_stop_other_buckets() {
    let local = local().await;
    let source = local.stack.names.source_bucket.clone();
    let replica = local.stack.names.replica_bucket.clone();
    // A second replicated pair whose destination does not answer.
    let far = replmon_tests::StackNames {
        source_bucket: "replmon-far-source".into(),
        replica_bucket: "replmon-far-replica".into(),
        ..Default::default()
    };
    replmon_tests::replicated_pair(
        &local.stack.s3,
        &far.source_bucket,
        &far.replica_bucket,
        "far",
    )
    .await
    .unwrap();
    let sim = ReplicationSimulator::start(
        local.stack.s3.clone(),
        vec![source.clone(), far.source_bucket.clone()],
        SimulatorSettings {
            delay: Delay::Fixed(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .await;
    let closed = replmon_tests::free_port().unwrap();
    let dead_sdk = sdk_config(&format!("http://127.0.0.1:{closed}")).await;
    let store = OneBucketUnreachable {
        local: &local.store,
        dead: S3ObjectStore::new(&dead_sdk),
        bucket: far.replica_bucket.clone(),
    };
    let buckets = [source.as_str(), far.source_bucket.as_str()];
    let first = local.run_with(&store, &buckets, "run-1").await;
    assert_eq!(first.buckets[0].probes[0].status, ProbeStatus::Arrived);
    assert_eq!(first.buckets[1].probes[0].status, ProbeStatus::Unverifiable);
    assert!(local.pages().await.is_empty(), "one blip does not page");
    let second = local.run_with(&store, &buckets, "run-2").await;
    assert_eq!(
        second.buckets[1].probes[0].status,
        ProbeStatus::Unverifiable
    );
    let pages = local.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].attribute("kind"), "canary-unverifiable");
    assert_eq!(pages[0].attribute("source_bucket"), far.source_bucket);
    assert!(
        pages[0].message.contains("cannot be read"),
        "{}",
        pages[0].message
    );
    // The healthy bucket's probes are gone from both its buckets.
    assert!(local.keys(&source).await.is_empty());
    assert!(local.keys(&replica).await.is_empty());
    let _ = local.sdk;
    sim.stop().await;
}
