//! alarm-events with its real adapters (DynamoDB, SNS, CloudWatch 1.99 client) against moto:
//! datapoints put by the test are read back by the enrichment, pages come from the inbox queue.
//! The monitor runs in the source region; the latency alarm and its datapoints are in the
//! replica's region, as AWS publishes them: the trend appears only if the monitor asks there.

use aws_sdk_cloudwatch::types::StandardUnit;
use replmon_shared::alarm::monitor::{AlarmMonitor, AlarmSettings};
use replmon_shared::aws::{CloudWatchMetrics, DynamoDbLedger, SnsNotifier};
use replmon_shared::clock::SystemClock;
use replmon_shared::event::ReplicationEventKind::OperationFailedReplication;
use replmon_shared::fakes::NotificationBuilder;
use replmon_tests::regions::{cloudwatch_in, put_replication_metric};
use replmon_tests::{monitor_on_stack, repo_root, sdk_config, StackNames};

/// A fixture as the alarm of `names` sends it: the fixtures' latency alarm lives in us-west-2
/// (cross-region replication); with same-region replication it lives in the one region.
fn fixture(path: &str, names: &StackNames) -> String {
    std::fs::read_to_string(repo_root().join("events/alarm").join(path))
        .expect("fixture")
        .replace("us-west-2", &names.replica_region)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_region_alarm_page_carries_the_destination_regions_trend() {
    alarm_page_carries_trend_from_cloudwatch_and_ledger_backlog(StackNames::default()).await;
}

/// Same-region replication: one region for everything, the same code path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_region_alarm_page_carries_the_trend() {
    alarm_page_carries_trend_from_cloudwatch_and_ledger_backlog(
        StackNames::default().same_region(),
    )
    .await;
}

async fn alarm_page_carries_trend_from_cloudwatch_and_ledger_backlog(names: StackNames) {
    let (moto, stack, replication) = monitor_on_stack(names).await.expect("local stack");
    let sdk = sdk_config(&moto.endpoint()).await;

    // Three failed objects in the ledger for the alarm's bucket and rule, via the real function path.
    let b = NotificationBuilder::new(
        &stack.names.source_bucket,
        &stack.names.replica_bucket,
        &stack.names.rule_id,
    );
    let bodies: Vec<String> = (0..3)
        .map(|i| {
            NotificationBuilder::notification(vec![b.record(
                OperationFailedReplication,
                &format!("k{i}"),
                "v",
                Some("DstBucketNotFound"),
            )])
        })
        .collect();
    replication
        .handle_value(&NotificationBuilder::sqs_event(&bodies))
        .await
        .unwrap();
    stack.drain_pages().await.unwrap();

    // Latency datapoints over the last 10 minutes (60, 120, ... 600 s), published where S3
    // publishes them: in the replica's region (us-west-2), not the monitor's (us-east-1).
    let names = &stack.names;
    let cloudwatch = cloudwatch_in(&sdk, &names.replica_region);
    let now = chrono::Utc::now().timestamp();
    let points: Vec<(i64, f64)> = (1..=10)
        .map(|i| (now - 60 * (11 - i), 60.0 * i as f64))
        .collect();
    put_replication_metric(
        &cloudwatch,
        (&names.source_bucket, &names.replica_bucket, &names.rule_id),
        "ReplicationLatency",
        StandardUnit::Seconds,
        &points,
    )
    .await
    .expect("put metric data");
    // The local model keeps regions apart as AWS does: across regions, the monitor's own region
    // has none of them.
    let home = cloudwatch_in(&sdk, &names.source_region)
        .list_metrics()
        .namespace("AWS/S3")
        .metric_name("ReplicationLatency")
        .send()
        .await
        .expect("list metrics");
    assert_eq!(
        home.metrics.unwrap_or_default().is_empty(),
        names.replica_region != names.source_region
    );

    let monitor = AlarmMonitor::new(
        DynamoDbLedger::new(&sdk, &stack.names.table),
        SnsNotifier::new(&sdk, &stack.topic_arn),
        CloudWatchMetrics::new(&sdk),
        SystemClock,
        AlarmSettings::default(),
    );
    monitor
        .handle(&fixture("metric-alarm.json", &stack.names))
        .await
        .expect("handled");
    monitor
        .handle(&fixture("metric-alarm.json", &stack.names))
        .await
        .expect("redelivery handled");
    let pages = stack.drain_pages().await.unwrap();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let page = &pages[0];
    assert!(
        page.subject
            .starts_with("[HIGH] ALARM: replmon-demo-source-replication-latency"),
        "{}",
        page.subject
    );
    assert!(page.message.contains("10 points"), "{}", page.message);
    assert!(
        page.message.contains("last 600, min 60, max 600"),
        "{}",
        page.message
    );
    assert!(
        page.message
            .contains("Ledger: 3 failed or late object versions"),
        "{}",
        page.message
    );
    assert_eq!(page.attribute("kind"), "alarm");
    assert_eq!(
        page.attribute("alarm_name"),
        "replmon-demo-source-replication-latency"
    );
    assert_eq!(page.attribute("source_bucket"), "replmon-demo-source");

    monitor
        .handle(&fixture("metric-ok.json", &stack.names))
        .await
        .expect("ok handled");
    let pages = stack.drain_pages().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(
        pages[0].subject.starts_with("[INFO] RECOVERED after 20m"),
        "{}",
        pages[0].subject
    );
    let alarms = stack.ledger_entities("alarm").await.unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["state"], "OK");
    assert!(!alarms[0].contains_key("incident_opened_at"));
    assert!(!alarms[0].contains_key("pending_notification"));
}
