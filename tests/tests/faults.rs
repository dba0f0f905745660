//! Fault injection: every function with its real AWS adapters talking to the local stack through
//! the fault proxy (tests/src/fault_proxy.rs), which answers chosen operations with 500, 503, the
//! service's throttling error, a response slower than the SDK's attempt timeout, or a dropped
//! connection.
//!
//! - Transient faults (fewer calls than the SDK's max attempts) are retried inside the SDK: the
//!   ledger and the pages are exactly what a run without faults gives, and nothing reached the
//!   local stack twice.
//! - Persistent faults fail the invocation (direct, SNS, EventBridge) or name the SQS messages in
//!   `batchItemFailures`; after the fault is cleared the redelivery completes: nothing is lost in
//!   the ledger and every incident pages exactly once.
//! - The canary reports "cannot verify" when S3 is faulted for good, fails its run (without
//!   writing probes) when its ledger is, and measures normally through transient faults.
//!
//! Handlers are built in-process the way the functions' main.rs build them
//! (`replmon_shared::aws::sdk_config` from `AwsSettings` read from the REPLMON_AWS_* variables),
//! with the proxy as endpoint; the last test runs the real binaries under `cargo lambda watch`
//! with `AWS_ENDPOINT_URL` set to the proxy.
//!
//! The SDK's standard retry mode keeps one retry quota per service per process (500 tokens, 5 per
//! retry, 10 per timeout): the faults here are few enough to stay well inside it.

use aws_config::{Region, SdkConfig};
use aws_sdk_cloudwatch::types::StandardUnit;
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use replmon_shared::alarm::monitor::{AlarmHandlerError, AlarmMonitor, AlarmSettings};
use replmon_shared::aws::{CloudWatchMetrics, DynamoDbLedger, S3ObjectStore, SnsNotifier};
use replmon_shared::canary::probe::ProbeStatus;
use replmon_shared::canary::{Canary, CanaryError, CanarySettings, RunReport};
use replmon_shared::clock::SystemClock;
use replmon_shared::config::AwsSettings;
use replmon_shared::event::ReplicationEventKind::{
    OperationFailedReplication, OperationMissedThreshold,
};
use replmon_shared::fakes::{NotificationBuilder, RecordingProbeMetrics};
use replmon_shared::replication::{HandlerError, MonitorSettings, ReplicationMonitor};
use replmon_tests::fault_proxy::{CallCounts, Fault, FaultProxy, Rule};
use replmon_tests::regions::{cloudwatch_in, put_replication_metric};
use replmon_tests::replication_sim::{Delay, ReplicationSimulator, SimulatorSettings};
use replmon_tests::{
    build_functions, invoke, repo_root, start_watch, MotoServer, ReceivedPage, Stack, StackNames,
    REGION,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longer than the attempt timeout below: the SDK gives up on the attempt and retries.
const SLOW: Duration = Duration::from_millis(2500);

/// How long a decided alarm notification belongs to the invocation sending it (longer than a
/// failed invocation and the look at its outcome take).
const PENDING_LEASE: Duration = Duration::from_secs(5);

/// The SDK settings of the functions, read from the variables a deployment sets.
fn aws_settings(max_attempts: u32) -> AwsSettings {
    let max_attempts = max_attempts.to_string();
    let variables = [
        ("REPLMON_AWS_ATTEMPT_TIMEOUT_MS", "1000"),
        ("REPLMON_AWS_OPERATION_TIMEOUT_MS", "8000"),
        ("REPLMON_AWS_CONNECT_TIMEOUT_MS", "500"),
        ("REPLMON_AWS_MAX_ATTEMPTS", max_attempts.as_str()),
    ];
    AwsSettings::from_env(&|name: &str| {
        variables
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| (*value).to_owned())
    })
    .expect("valid AWS settings")
}

/// What main.rs builds (`replmon_shared::aws::sdk_config`), pointed at the proxy with the local
/// stack's region and dummy credentials (the process environment is not touched: tests run in
/// parallel).
async fn function_sdk(settings: &AwsSettings, endpoint: &str) -> SdkConfig {
    replmon_shared::aws::sdk_config(settings, "replmon-tests")
        .await
        .into_builder()
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "fault-tests",
        )))
        .build()
}

/// A moto server with a provisioned stack (read back directly), and the proxy in front of it.
struct FaultyStack {
    moto: MotoServer,
    stack: Stack,
    proxy: FaultProxy,
    /// The functions' configuration: every call goes through the proxy.
    sdk: SdkConfig,
}

impl FaultyStack {
    async fn start(settings: &AwsSettings) -> FaultyStack {
        let moto = MotoServer::start().expect("moto server");
        let direct = replmon_tests::sdk_config(&moto.endpoint()).await;
        let stack = Stack::provision(&direct, StackNames::default())
            .await
            .expect("provisioned");
        let proxy = FaultProxy::start(&moto.endpoint()).await.expect("proxy");
        let sdk = function_sdk(settings, &proxy.endpoint()).await;
        FaultyStack {
            moto,
            stack,
            proxy,
            sdk,
        }
    }

    /// Wipe the local stack and provision it again; rules cleared, counts forgotten.
    async fn reprovision(&mut self) {
        self.moto.reset().await.expect("reset");
        let direct = replmon_tests::sdk_config(&self.moto.endpoint()).await;
        self.stack = Stack::provision(&direct, StackNames::default())
            .await
            .expect("provisioned");
        self.proxy.clear();
        self.proxy.reset_counts();
    }

    fn replication_monitor(
        &self,
        settings: MonitorSettings,
    ) -> ReplicationMonitor<DynamoDbLedger, SnsNotifier, SystemClock> {
        ReplicationMonitor::new(
            DynamoDbLedger::new(&self.sdk, &self.stack.names.table),
            SnsNotifier::new(&self.sdk, &self.stack.topic_arn),
            SystemClock,
            settings,
        )
    }

    fn alarm_monitor(
        &self,
    ) -> AlarmMonitor<DynamoDbLedger, SnsNotifier, CloudWatchMetrics, SystemClock> {
        AlarmMonitor::new(
            DynamoDbLedger::new(&self.sdk, &self.stack.names.table),
            SnsNotifier::new(&self.sdk, &self.stack.topic_arn),
            CloudWatchMetrics::new(&self.sdk),
            SystemClock,
            AlarmSettings {
                pending_lease: chrono::Duration::from_std(PENDING_LEASE).unwrap_or_default(),
                ..AlarmSettings::default()
            },
        )
    }

    /// What the on-call and the ledger saw, without what depends on the clock.
    async fn outcome(&self) -> Outcome {
        let ledger = self
            .stack
            .ledger_items()
            .await
            .expect("ledger")
            .into_iter()
            .map(|mut item| {
                for clock_dependent in [
                    "expires_at",
                    "opened_at",
                    "last_recorded_at",
                    "last_page_at",
                    "first_page_at",
                    "pending_since",
                ] {
                    item.remove(clock_dependent);
                }
                item
            })
            .collect();
        let mut pages: Vec<ReceivedPage> = self
            .stack
            .drain_pages()
            .await
            .expect("pages")
            .into_iter()
            .map(|mut page| {
                page.message = page
                    .message
                    .lines()
                    .filter(|line| !line.starts_with("Incident open:"))
                    .collect::<Vec<_>>()
                    .join("\n");
                page
            })
            .collect();
        pages.sort_by(|a, b| (&a.subject, &a.message).cmp(&(&b.subject, &b.message)));
        Outcome { ledger, pages }
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    ledger: Vec<BTreeMap<String, String>>,
    pages: Vec<ReceivedPage>,
}

impl Outcome {
    fn entities(&self, entity: &str) -> usize {
        self.ledger
            .iter()
            .filter(|item| item.get("entity").map(String::as_str) == Some(entity))
            .count()
    }
}

// ---------------------------------------------------------------------------------------------
// replication-events

/// Four messages: two failures of one reason and one of another (two incidents), one late object
/// (a third incident).
fn replication_batch(stack: &Stack) -> Value {
    let builder = NotificationBuilder::new(
        &stack.names.source_bucket,
        &stack.names.replica_bucket,
        &stack.names.rule_id,
    );
    let failure = |key: &str, reason: &str| {
        NotificationBuilder::notification(vec![builder.record(
            OperationFailedReplication,
            key,
            "v1",
            Some(reason),
        )])
    };
    NotificationBuilder::sqs_event(&[
        failure("data/a.bin", "DstPutObjectNotPermitted"),
        failure("data/b c.bin", "DstPutObjectNotPermitted"),
        failure("data/d.bin", "DstKmsKeyNotFound"),
        NotificationBuilder::notification(vec![builder.record(
            OperationMissedThreshold,
            "data/late.bin",
            "v1",
            None,
        )]),
    ])
}

fn batch_item_failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|failures| {
            failures
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

const ALL_MESSAGES: [&str; 4] = ["msg-0", "msg-1", "msg-2", "msg-3"];

/// The batch on a clean stack: the outcome every faulted run must end with, and the calls made.
async fn clean_replication_run(local: &mut FaultyStack) -> (Outcome, BTreeMap<String, CallCounts>) {
    local.reprovision().await;
    let response = local
        .replication_monitor(MonitorSettings::default())
        .handle_value(&replication_batch(&local.stack))
        .await
        .expect("clean run");
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    let outcome = local.outcome().await;
    assert_eq!(outcome.pages.len(), 3, "{:#?}", outcome.pages);
    assert_eq!(outcome.entities("object"), 4);
    assert_eq!(outcome.entities("incident"), 3);
    (outcome, local.proxy.all_counts())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_transient_faults_of_every_kind_are_retried_and_match_a_clean_run() {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let (clean, clean_calls) = clean_replication_run(&mut local).await;
    let faulted_operations = [
        "dynamodb:TransactWriteItems",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "sns:Publish",
    ];
    for fault in Fault::every_kind(SLOW) {
        local.reprovision().await;
        for operation in faulted_operations {
            local.proxy.inject(Rule::next(1, operation, fault));
        }
        let response = local
            .replication_monitor(MonitorSettings::default())
            .handle_value(&replication_batch(&local.stack))
            .await
            .expect("handled");
        assert!(
            batch_item_failures(&response).is_empty(),
            "{fault:?}: {response}"
        );
        assert_eq!(local.outcome().await, clean, "{fault:?}");
        for (operation, clean_counts) in &clean_calls {
            let counts = local.proxy.counts(operation);
            let faulted = u32::from(faulted_operations.contains(&operation.as_str()));
            assert_eq!(counts.faulted, faulted, "{fault:?} {operation}");
            // Each faulted call was retried once, and nothing reached the stack twice.
            assert_eq!(
                counts.calls,
                clean_counts.calls + faulted,
                "{fault:?} {operation}"
            );
            assert_eq!(
                counts.forwarded, clean_counts.forwarded,
                "{fault:?} {operation}: {counts:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_two_throttles_in_a_row_are_absorbed_by_three_attempts() {
    let mut local = FaultyStack::start(&aws_settings(3)).await;
    let (clean, _) = clean_replication_run(&mut local).await;
    local.reprovision().await;
    local.proxy.inject(Rule::next(
        2,
        "dynamodb:TransactWriteItems",
        Fault::ThroughputExceeded,
    ));
    local
        .proxy
        .inject(Rule::next(2, "sns:Publish", Fault::Throttling));
    let response = local
        .replication_monitor(MonitorSettings::default())
        .handle_value(&replication_batch(&local.stack))
        .await
        .expect("handled");
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    assert_eq!(local.outcome().await, clean);
    assert_eq!(local.proxy.counts("dynamodb:TransactWriteItems").faulted, 2);
    assert_eq!(local.proxy.counts("sns:Publish").faulted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_persistent_faults_fail_batch_items_and_the_redelivery_pages_each_incident_once(
) {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let (clean, _) = clean_replication_run(&mut local).await;
    let cases = [
        // Nothing can be recorded (records and counts are one transaction): every message goes
        // back, having written nothing.
        Rule::always("dynamodb:TransactWriteItems", Fault::InternalError),
        Rule::always("dynamodb:TransactWriteItems", Fault::ServiceUnavailable),
        // Recorded and claimed, but no page goes out (the claim is given back).
        Rule::always("sns:Publish", Fault::Throttling),
        Rule::always("sns:Publish", Fault::DropConnection),
        Rule::always("dynamodb:*", Fault::Slow(SLOW)),
    ];
    for rule in cases {
        local.reprovision().await;
        let monitor = local.replication_monitor(MonitorSettings::default());
        let batch = replication_batch(&local.stack);
        local.proxy.inject(rule.clone());
        let response = monitor.handle_value(&batch).await.expect("handled");
        assert_eq!(batch_item_failures(&response), ALL_MESSAGES, "{rule:?}");
        let faulted = local.outcome().await;
        assert!(faulted.pages.is_empty(), "{rule:?}: {:#?}", faulted.pages);
        let operation = rule.operation.replace('*', "TransactWriteItems");
        let counts = local.proxy.counts(&operation);
        // The SDK tried every call twice (max attempts) before giving up.
        assert!(
            counts.faulted >= 2 && counts.faulted % 2 == 0,
            "{rule:?}: {counts:?}"
        );

        local.proxy.clear();
        let response = monitor.handle_value(&batch).await.expect("redelivery");
        assert!(batch_item_failures(&response).is_empty(), "{rule:?}");
        assert_eq!(local.outcome().await, clean, "{rule:?}");
        // Another redelivery (at-least-once) changes nothing and pages nothing.
        let response = monitor.handle_value(&batch).await.expect("duplicate");
        assert!(batch_item_failures(&response).is_empty(), "{rule:?}");
        let after_duplicate = local.outcome().await;
        assert!(after_duplicate.pages.is_empty(), "{rule:?}");
        assert_eq!(after_duplicate.ledger, clean.ledger, "{rule:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_direct_and_sns_deliveries_fail_the_invocation_under_persistent_faults() {
    let local = FaultyStack::start(&aws_settings(2)).await;
    let monitor = local.replication_monitor(MonitorSettings::default());
    let builder = NotificationBuilder::new(
        &local.stack.names.source_bucket,
        &local.stack.names.replica_bucket,
        &local.stack.names.rule_id,
    );
    let notification = NotificationBuilder::notification(vec![builder.record(
        OperationFailedReplication,
        "direct/object.bin",
        "v1",
        Some("DstBucketNotFound"),
    )]);
    let direct = notification.clone();
    let sns = serde_json::json!({"Records": [{
        "EventSource": "aws:sns",
        "Sns": {"MessageId": "sns-1", "Message": notification},
    }]})
    .to_string();
    for (delivery, payload) in [("direct", &direct), ("sns", &sns)] {
        let rule = local
            .proxy
            .inject(Rule::always("dynamodb:*", Fault::Throttling));
        let error = monitor.handle(payload).await.expect_err(delivery);
        assert!(
            matches!(
                error,
                HandlerError::Incomplete {
                    failed: 1,
                    total: 1,
                    ..
                }
            ),
            "{delivery}: {error}"
        );
        assert!(error.to_string().contains("retry"), "{error}");
        local.proxy.remove(rule);
        monitor.handle(payload).await.expect(delivery);
    }
    // Both deliveries carry the same event: one object, one incident, one page.
    let outcome = local.outcome().await;
    assert_eq!(outcome.entities("object"), 1);
    assert_eq!(outcome.pages.len(), 1, "{:#?}", outcome.pages);
    assert!(
        outcome.pages[0].subject.contains("DstBucketNotFound"),
        "{}",
        outcome.pages[0].subject
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_page_sent_but_not_confirmed_is_acknowledged_so_no_retry_pages_it_again() {
    let local = FaultyStack::start(&aws_settings(2)).await;
    let monitor = local.replication_monitor(MonitorSettings::default());
    let builder = NotificationBuilder::new(
        &local.stack.names.source_bucket,
        &local.stack.names.replica_bucket,
        &local.stack.names.rule_id,
    );
    let batch = NotificationBuilder::sqs_event(&[NotificationBuilder::notification(vec![builder
        .record(
            OperationFailedReplication,
            "data/confirm.bin",
            "v1",
            Some("DstBucketNotFound"),
        )])]);
    // A new incident is created with its first page claimed in the batch's transaction; after
    // the publish, the first UpdateItem confirms the page. The ledger fails from there on.
    local
        .proxy
        .inject(Rule::always("dynamodb:UpdateItem", Fault::InternalError));
    let response = monitor.handle_value(&batch).await.expect("handled");
    // The page went out: the message is acknowledged, or its retry would page a second time
    // once the claim's lease ran out.
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    // The outbox tries the confirmation four times (the SDK makes two attempts of each).
    assert_eq!(local.proxy.counts("dynamodb:UpdateItem").faulted, 8);
    let outcome = local.outcome().await;
    assert_eq!(outcome.pages.len(), 1, "{:#?}", outcome.pages);
    assert_eq!(outcome.entities("object"), 1);
    let incident = outcome
        .ledger
        .iter()
        .find(|item| item.get("entity").map(String::as_str) == Some("incident"))
        .expect("incident");
    // What the ledger could not record: the page, still under its (unconfirmed) claim.
    assert_eq!(incident["pages_sent"], "0");
    assert!(incident.contains_key("page_claim"), "{incident:?}");
}

/// The ambiguous failure, on the real adapter: the batch's transaction reaches DynamoDB and
/// takes effect, and its answer is lost. The SDK sends it again with the same
/// `ClientRequestToken`, which is answered as done (the local stack models DynamoDB's token), so
/// nothing is applied twice and the outcome is the clean run's. When every answer is lost, the
/// messages go back; what was written is counted exactly once, and the redelivery (after the
/// dead attempt's page claim expired) pages each incident once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_commit_whose_answer_is_lost_is_applied_once() {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let (clean, clean_calls) = clean_replication_run(&mut local).await;
    let transactions = |calls: &BTreeMap<String, CallCounts>| {
        calls
            .get("dynamodb:TransactWriteItems")
            .map_or(0, |c| c.forwarded)
    };

    local.reprovision().await;
    local.proxy.inject(Rule::next(
        1,
        "dynamodb:TransactWriteItems",
        Fault::LoseResponse,
    ));
    let response = local
        .replication_monitor(MonitorSettings::default())
        .handle_value(&replication_batch(&local.stack))
        .await
        .expect("handled");
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    assert_eq!(local.outcome().await, clean);
    // The lost one reached the stack, and so did its retry (answered from the token).
    assert_eq!(
        transactions(&local.proxy.all_counts()),
        transactions(&clean_calls) + 1
    );

    local.reprovision().await;
    let lease = std::time::Duration::from_secs(2);
    let settings = MonitorSettings {
        page_lease: chrono::Duration::from_std(lease).unwrap_or_default(),
        claim_waits: 0,
        ..MonitorSettings::default()
    };
    let monitor = local.replication_monitor(settings);
    let batch = replication_batch(&local.stack);
    let rule = local.proxy.inject(Rule::always(
        "dynamodb:TransactWriteItems",
        Fault::LoseResponse,
    ));
    let response = monitor.handle_value(&batch).await.expect("handled");
    assert_eq!(batch_item_failures(&response), ALL_MESSAGES);
    let lost = local.outcome().await;
    assert!(lost.pages.is_empty(), "{:#?}", lost.pages);
    let counts = |outcome: &Outcome| -> Vec<(String, String, String)> {
        let mut counts: Vec<_> = outcome
            .ledger
            .iter()
            .filter(|item| item.get("entity").map(String::as_str) == Some("incident"))
            .map(|item| {
                (
                    item["sk"].clone(),
                    item["event_count"].clone(),
                    item["backlog_count"].clone(),
                )
            })
            .collect();
        counts.sort();
        counts
    };
    assert_eq!(counts(&lost), counts(&clean), "written once, counted once");
    local.proxy.remove(rule);
    tokio::time::sleep(lease + std::time::Duration::from_millis(200)).await;
    let response = monitor.handle_value(&batch).await.expect("redelivery");
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    assert_eq!(local.outcome().await, clean);
}

/// Another transaction holding one of the batch's items (a storm's writers counting into one
/// incident) cancels the commit with `TransactionConflict`; the handler waits and commits again,
/// and the outcome is the clean run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_commit_that_meets_another_transaction_goes_again() {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let (clean, _) = clean_replication_run(&mut local).await;
    local.reprovision().await;
    local.proxy.inject(Rule::next(
        3,
        "dynamodb:TransactWriteItems",
        Fault::TransactionConflict,
    ));
    let response = local
        .replication_monitor(MonitorSettings::default())
        .handle_value(&replication_batch(&local.stack))
        .await
        .expect("handled");
    assert!(batch_item_failures(&response).is_empty(), "{response}");
    assert_eq!(local.outcome().await, clean);
    assert_eq!(local.proxy.counts("dynamodb:TransactWriteItems").faulted, 3);
}

// ---------------------------------------------------------------------------------------------
// alarm-events

fn alarm_fixture(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("events/alarm").join(name)).expect("fixture")
}

/// Ten latency datapoints over the last ten minutes (the alarm's metric), put directly, in the
/// replica's region where S3 publishes them.
async fn put_latency_datapoints(local: &FaultyStack) {
    let direct = replmon_tests::sdk_config(&local.moto.endpoint()).await;
    let names = &local.stack.names;
    let now = chrono::Utc::now().timestamp();
    let points: Vec<(i64, f64)> = (1..=10)
        .map(|i| (now - 60 * (11 - i), 60.0 * i as f64))
        .collect();
    put_replication_metric(
        &cloudwatch_in(&direct, &names.replica_region),
        (&names.source_bucket, &names.replica_bucket, &names.rule_id),
        "ReplicationLatency",
        StandardUnit::Seconds,
        &points,
    )
    .await
    .expect("put metric data");
}

/// The alarm page on a clean stack.
async fn clean_alarm_run(local: &mut FaultyStack) -> Outcome {
    local.reprovision().await;
    put_latency_datapoints(local).await;
    local
        .alarm_monitor()
        .handle(&alarm_fixture("metric-alarm.json"))
        .await
        .expect("clean run");
    let outcome = local.outcome().await;
    assert_eq!(outcome.pages.len(), 1, "{:#?}", outcome.pages);
    assert!(
        outcome.pages[0].message.contains("10 points"),
        "{}",
        outcome.pages[0].message
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_transient_faults_of_every_kind_are_retried_and_page_like_a_clean_run() {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let clean = clean_alarm_run(&mut local).await;
    let faulted_operations = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "cloudwatch:GetMetricData",
        "sns:Publish",
    ];
    for fault in Fault::every_kind(SLOW) {
        local.reprovision().await;
        put_latency_datapoints(&local).await;
        for operation in faulted_operations {
            local.proxy.inject(Rule::next(1, operation, fault));
        }
        local
            .alarm_monitor()
            .handle(&alarm_fixture("metric-alarm.json"))
            .await
            .unwrap_or_else(|error| panic!("{fault:?}: {error}"));
        assert_eq!(local.outcome().await, clean, "{fault:?}");
        for operation in faulted_operations {
            let counts = local.proxy.counts(operation);
            assert_eq!(counts.faulted, 1, "{fault:?} {operation}");
            assert!(counts.calls >= 2, "{fault:?} {operation}: {counts:?}");
            assert_eq!(
                counts.forwarded,
                counts.calls - 1,
                "{fault:?} {operation}: {counts:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_metric_faults_degrade_the_page_instead_of_losing_it() {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let clean = clean_alarm_run(&mut local).await;
    for fault in [Fault::InternalError, Fault::Throttling, Fault::Slow(SLOW)] {
        local.reprovision().await;
        put_latency_datapoints(&local).await;
        local
            .proxy
            .inject(Rule::always("cloudwatch:GetMetricData", fault));
        local
            .alarm_monitor()
            .handle(&alarm_fixture("metric-alarm.json"))
            .await
            .unwrap_or_else(|error| panic!("{fault:?}: {error}"));
        let outcome = local.outcome().await;
        assert_eq!(outcome.pages.len(), 1, "{fault:?}");
        let page = &outcome.pages[0];
        assert_eq!(page.subject, clean.pages[0].subject);
        assert_eq!(page.attributes, clean.pages[0].attributes);
        assert!(
            page.message.contains("Trend unavailable:") && !page.message.contains("10 points"),
            "{fault:?}: {}",
            page.message
        );
        // The rest of the enrichment is there.
        assert!(
            page.message
                .contains("Ledger: 0 failed or late object versions"),
            "{}",
            page.message
        );
        assert_eq!(outcome.ledger, clean.ledger, "{fault:?}");
        assert_eq!(local.proxy.counts("cloudwatch:GetMetricData").faulted, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_persistent_ledger_or_publish_faults_fail_the_invocation_and_the_redelivery_pages_once(
) {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let clean = clean_alarm_run(&mut local).await;
    let alarm = alarm_fixture("metric-alarm.json");

    // The ledger is down: nothing decided, nothing sent.
    local.reprovision().await;
    put_latency_datapoints(&local).await;
    let monitor = local.alarm_monitor();
    local
        .proxy
        .inject(Rule::always("dynamodb:*", Fault::ServiceUnavailable));
    let error = monitor.handle(&alarm).await.expect_err("ledger down");
    assert!(
        matches!(error, AlarmHandlerError::Incomplete { failed: 1, .. }),
        "{error}"
    );
    assert!(local.outcome().await.pages.is_empty());
    local.proxy.clear();
    monitor.handle(&alarm).await.expect("redelivery");
    assert_eq!(local.outcome().await, clean);
    monitor.handle(&alarm).await.expect("duplicate");
    assert!(local.outcome().await.pages.is_empty());

    // SNS is down: the decision is stored as pending, its claim released, sent once by a retry.
    local.reprovision().await;
    put_latency_datapoints(&local).await;
    let monitor = local.alarm_monitor();
    local
        .proxy
        .inject(Rule::always("sns:Publish", Fault::InternalError));
    monitor.handle(&alarm).await.expect_err("SNS down");
    let stored = local.stack.ledger_entities("alarm").await.expect("alarm");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["pending_notification"], "OPENED");
    assert!(local.outcome().await.pages.is_empty());
    assert!(
        !stored[0].contains_key("pending_since"),
        "the failed sender released it"
    );
    local.proxy.clear();
    // Released, so the retry sends it at once (no lease to wait for), and only once.
    monitor.handle(&alarm).await.expect("redelivery");
    let without_revision = |outcome: &Outcome| -> Vec<BTreeMap<String, String>> {
        outcome
            .ledger
            .iter()
            .cloned()
            .map(|mut item| {
                item.remove("revision");
                item
            })
            .collect()
    };
    let redelivered = local.outcome().await;
    assert_eq!(redelivered.pages, clean.pages);
    // More writes than a clean run (the release, the retry's claim): only the revision differs.
    assert_eq!(without_revision(&redelivered), without_revision(&clean));
    monitor.handle(&alarm).await.expect("duplicate");
    assert!(local.outcome().await.pages.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_notification_sent_but_not_cleared_does_not_fail_the_invocation() {
    let mut local = FaultyStack::start(&aws_settings(2)).await;
    let clean = clean_alarm_run(&mut local).await;
    local.reprovision().await;
    put_latency_datapoints(&local).await;
    // PutItems of a first change: the catalog entry, the decided change (pending), then (after
    // the publish) clearing the pending notification. The ledger fails from that last one on.
    local
        .proxy
        .inject(Rule::always("dynamodb:PutItem", Fault::InternalError).after(2));
    local
        .alarm_monitor()
        .handle(&alarm_fixture("metric-alarm.json"))
        .await
        .expect("the page is out: no retry that would send it again");
    // The outbox tries the clearing four times (the SDK makes two attempts of each).
    assert_eq!(local.proxy.counts("dynamodb:PutItem").faulted, 8);
    let outcome = local.outcome().await;
    assert_eq!(outcome.pages, clean.pages);
    let alarm = outcome
        .ledger
        .iter()
        .find(|item| item.get("entity").map(String::as_str) == Some("alarm"))
        .expect("alarm record");
    assert_eq!(alarm["pending_notification"], "OPENED");
}

// ---------------------------------------------------------------------------------------------
// canary

fn canary_settings(bad_probes_to_page: u32) -> CanarySettings {
    CanarySettings {
        // Room for three slow calls (setup read, PUT, record) before the first poll, with the
        // clean-up's version checks after it, on a loaded two-core machine.
        budget: Duration::from_secs(8),
        deadline: chrono::Duration::seconds(20),
        latency_threshold: chrono::Duration::seconds(10),
        bad_probes_to_page,
        overlap_margin: chrono::Duration::seconds(1),
        ..CanarySettings::default()
    }
}

struct CanaryBench {
    local: FaultyStack,
    metrics: RecordingProbeMetrics,
    simulator: ReplicationSimulator,
}

impl CanaryBench {
    async fn start() -> CanaryBench {
        let local = FaultyStack::start(&aws_settings(2)).await;
        let simulator = ReplicationSimulator::start(
            local.stack.s3.clone(),
            vec![local.stack.names.source_bucket.clone()],
            SimulatorSettings {
                delay: Delay::Fixed(Duration::from_millis(300)),
                ..Default::default()
            },
        )
        .await;
        CanaryBench {
            local,
            metrics: RecordingProbeMetrics::default(),
            simulator,
        }
    }

    /// One scheduled run, as the function's handler runs it.
    async fn run(&self, run_id: &str, bad_probes_to_page: u32) -> Result<RunReport, CanaryError> {
        let sdk = &self.local.sdk;
        let canary = Canary::new(
            S3ObjectStore::new(sdk),
            DynamoDbLedger::new(sdk, &self.local.stack.names.table),
            SnsNotifier::new(sdk, &self.local.stack.topic_arn),
            &self.metrics,
            SystemClock,
            vec![self.local.stack.names.source_bucket.clone()],
            canary_settings(bad_probes_to_page),
        );
        let trigger = serde_json::json!({ "run_id": run_id }).to_string();
        canary.handle(&trigger, "request-id").await
    }

    /// Pages and notices without the audit notices (the stack's rule has no metrics nor RTC).
    async fn pages(&self) -> Vec<ReceivedPage> {
        let mut pages = self.local.stack.drain_pages().await.expect("pages");
        pages.retain(|page| page.attribute("kind") != "canary-audit");
        pages
    }

    async fn probe_objects_left(&self) -> usize {
        let mut left = 0;
        for bucket in [
            &self.local.stack.names.source_bucket,
            &self.local.stack.names.replica_bucket,
        ] {
            let out = self
                .local
                .stack
                .s3
                .list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .expect("list");
            left += out.versions().len() + out.delete_markers().len();
        }
        left
    }
}

fn probe_statuses(report: &RunReport) -> Vec<ProbeStatus> {
    report.buckets[0]
        .probes
        .iter()
        .map(|probe| probe.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_measures_normally_through_transient_faults_of_every_kind() {
    let bench = CanaryBench::start().await;
    let clean = bench.run("clean", 1).await.expect("clean run");
    assert_eq!(probe_statuses(&clean), [ProbeStatus::Arrived]);
    let faulted_operations = [
        "s3:PutObject",
        "s3:HeadObject",
        "s3:GetBucketReplication",
        "dynamodb:PutItem",
        "dynamodb:Query",
    ];
    for (run, fault) in Fault::every_kind(SLOW).into_iter().enumerate() {
        bench.local.proxy.reset_counts();
        for operation in faulted_operations {
            bench.local.proxy.inject(Rule::next(1, operation, fault));
        }
        let report = bench
            .run(&format!("run-{run}"), 1)
            .await
            .unwrap_or_else(|error| panic!("{fault:?}: {error}"));
        let bucket = &report.buckets[0];
        assert_eq!(
            probe_statuses(&report),
            [ProbeStatus::Arrived],
            "{fault:?}: {report:#?}"
        );
        assert!(
            bucket.problems.is_empty(),
            "{fault:?}: {:?}",
            bucket.problems
        );
        assert!(bucket.probes[0].latency_ms.is_some(), "{fault:?}");
        for operation in faulted_operations {
            let counts = bench.local.proxy.counts(operation);
            assert_eq!(counts.faulted, 1, "{fault:?} {operation}");
            assert_eq!(counts.forwarded, counts.calls - 1, "{fault:?} {operation}");
        }
        assert!(bench.pages().await.is_empty(), "{fault:?}");
    }
    assert_eq!(bench.probe_objects_left().await, 0);
    bench.simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_reports_cannot_verify_when_s3_is_faulted_for_good_and_recovers_after() {
    let bench = CanaryBench::start().await;
    let cases = [
        (
            Rule::always("s3:HeadObject", Fault::ServiceUnavailable),
            "the destination cannot be read",
        ),
        (
            Rule::always("s3:PutObject", Fault::Throttling),
            "writing the probe into the source failed",
        ),
    ];
    for (case, (rule, detail)) in cases.into_iter().enumerate() {
        let fault = bench.local.proxy.inject(rule.clone());
        let report = bench
            .run(&format!("faulted-{case}"), 1)
            .await
            .unwrap_or_else(|error| panic!("{rule:?}: no report but {error}"));
        let bucket = &report.buckets[0];
        assert_eq!(
            probe_statuses(&report),
            [ProbeStatus::Unverifiable],
            "{rule:?}: {report:#?}"
        );
        let pages = bench.pages().await;
        assert_eq!(pages.len(), 1, "{rule:?}: {pages:#?}");
        assert!(
            pages[0].subject.contains("CANNOT VERIFY"),
            "{}",
            pages[0].subject
        );
        assert!(pages[0].message.contains(detail), "{}", pages[0].message);
        assert_eq!(pages[0].attribute("kind"), "canary-unverifiable");
        assert!(bucket.pages.iter().all(|p| p.contains("CANNOT VERIFY")));
        assert!(bench.local.proxy.counts(&rule.operation).faulted >= 2);

        // Fixed: the next run measures, and the incident recovers with a notice.
        bench.local.proxy.remove(fault);
        let report = bench
            .run(&format!("fixed-{case}"), 1)
            .await
            .expect("recovered run");
        assert_eq!(probe_statuses(&report), [ProbeStatus::Arrived]);
        let pages = bench.pages().await;
        assert_eq!(pages.len(), 1, "{pages:#?}");
        assert!(
            pages[0].subject.starts_with("[RESOLVED]"),
            "{}",
            pages[0].subject
        );
    }
    // With HEAD down the first faulted run could not check that the versions at its probe key
    // are its own, so it deleted nothing; a run after that run's window cleans them up.
    tokio::time::sleep(Duration::from_secs(10)).await;
    bench.run("sweep", 1).await.expect("sweep run");
    assert_eq!(bench.probe_objects_left().await, 0);
    bench.simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_fails_its_run_without_probing_while_its_ledger_is_down_and_recovers_after() {
    let bench = CanaryBench::start().await;
    let fault = bench
        .local
        .proxy
        .inject(Rule::always("dynamodb:*", Fault::InternalError));
    let error = bench
        .run("ledger-down", 1)
        .await
        .expect_err("the run cannot be claimed nor recorded");
    assert!(
        matches!(&error, CanaryError::Incomplete { run_id, .. } if run_id == "ledger-down"),
        "{error}"
    );
    assert!(error.to_string().contains("ledger"), "{error}");
    // Unclaimed runs write no probe (a probe nobody can record would be left behind), and
    // without the ledger no page can be owed: the function's error is the signal.
    assert_eq!(bench.probe_objects_left().await, 0);
    assert!(bench.pages().await.is_empty());
    assert_eq!(bench.local.proxy.counts("s3:PutObject").calls, 0);

    bench.local.proxy.remove(fault);
    let report = bench.run("ledger-back", 1).await.expect("next run");
    assert_eq!(probe_statuses(&report), [ProbeStatus::Arrived]);
    assert!(bench.pages().await.is_empty());
    bench.simulator.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The real binaries

fn response(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_functions_under_cargo_lambda_watch_fail_on_persistent_faults_and_recover_once() {
    build_functions();
    let moto = MotoServer::start().expect("moto server");
    let direct = replmon_tests::sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&direct, StackNames::default())
        .await
        .expect("provisioned");
    let proxy = FaultProxy::start(&moto.endpoint()).await.expect("proxy");
    let mut env = stack.function_env(&proxy.endpoint());
    for (name, value) in [
        ("REPLMON_AWS_ATTEMPT_TIMEOUT_MS", "1000"),
        ("REPLMON_AWS_OPERATION_TIMEOUT_MS", "5000"),
        ("REPLMON_AWS_MAX_ATTEMPTS", "2"),
        ("REPLMON_PAGE_LEASE_SECONDS", "1"),
        ("REPLMON_CANARY_BUDGET_SECONDS", "3"),
        ("REPLMON_CANARY_BAD_PROBES", "1"),
        ("REPLMON_CANARY_POLL_MIN_MS", "100"),
    ] {
        env.push((name.into(), value.into()));
    }
    let watch = start_watch(&env).expect("cargo lambda watch");

    // replication-events from SQS: the message goes back while the ledger refuses writes.
    let commits = proxy.inject(Rule::always(
        "dynamodb:TransactWriteItems",
        Fault::InternalError,
    ));
    let first = invoke(watch.port, "replication-events", "sqs/failed.json").expect("invoke");
    assert!(first.success, "{}{}", first.stdout, first.stderr);
    assert_eq!(
        batch_item_failures(&response(&first.stdout)),
        ["dedf1569-472d-47d5-9ab3-8dcbb0a23e9b"]
    );
    assert!(proxy.counts("dynamodb:TransactWriteItems").faulted >= 2);
    assert!(stack.drain_pages().await.expect("pages").is_empty());
    proxy.remove(commits);
    for delivery in ["redelivery", "duplicate"] {
        let again = invoke(watch.port, "replication-events", "sqs/failed.json").expect("invoke");
        assert!(
            again.success,
            "{delivery}: {}{}",
            again.stdout, again.stderr
        );
        assert!(batch_item_failures(&response(&again.stdout)).is_empty());
        let pages = stack.drain_pages().await.expect("pages");
        let expected = usize::from(delivery == "redelivery");
        assert_eq!(pages.len(), expected, "{delivery}: {pages:#?}");
    }
    assert_eq!(
        stack.ledger_entities("object").await.expect("ledger").len(),
        1
    );

    // alarm-events from EventBridge: the invocation fails while SNS throttles.
    let publish = proxy.inject(Rule::always("sns:Publish", Fault::Throttling));
    let failed = invoke(watch.port, "alarm-events", "alarm/metric-alarm.json").expect("invoke");
    assert!(!failed.success, "{}", failed.stdout);
    assert!(proxy.counts("sns:Publish").faulted >= 2);
    assert!(stack.drain_pages().await.expect("pages").is_empty());
    proxy.remove(publish);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the pending lease
    for delivery in ["redelivery", "duplicate"] {
        let again = invoke(watch.port, "alarm-events", "alarm/metric-alarm.json").expect("invoke");
        assert!(
            again.success,
            "{delivery}: {}{}",
            again.stdout, again.stderr
        );
        let pages = stack.drain_pages().await.expect("pages");
        let expected = usize::from(delivery == "redelivery");
        assert_eq!(pages.len(), expected, "{delivery}: {pages:#?}");
    }

    // canary: the destination cannot be read; the run says so and pages "cannot verify".
    proxy.inject(Rule::always("s3:HeadObject", Fault::ServiceUnavailable));
    let run = invoke(watch.port, "canary", "canary/scheduled-event.json").expect("invoke");
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let report = response(&run.stdout);
    assert_eq!(
        report["buckets"][0]["probes"][0]["status"], "UNVERIFIABLE",
        "{report:#}"
    );
    let pages: Vec<ReceivedPage> = stack
        .drain_pages()
        .await
        .expect("pages")
        .into_iter()
        .filter(|page| page.attribute("kind") != "canary-audit")
        .collect();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert!(
        pages[0].subject.contains("CANNOT VERIFY"),
        "{}",
        pages[0].subject
    );
    drop(watch);
}
