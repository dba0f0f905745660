//! alarm-events with its real adapters (DynamoDB, SNS, CloudWatch 1.99 client) against moto:
//! datapoints put by the test are read back by the enrichment, pages come from the inbox queue.

use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use replmon_shared::alarm_monitor::{AlarmMonitor, AlarmSettings};
use replmon_shared::aws::{CloudWatchMetrics, DynamoDbLedger, SnsNotifier};
use replmon_shared::clock::SystemClock;
use replmon_shared::event::ReplicationEventKind::OperationFailedReplication;
use replmon_shared::fakes::NotificationBuilder;
use replmon_tests::{monitor_on_local_stack, repo_root, sdk_config};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(repo_root().join("events/alarm").join(path)).expect("fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_page_carries_trend_from_cloudwatch_and_ledger_backlog() {
    let (moto, stack, replication) = monitor_on_local_stack().await.expect("local stack");
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

    // Latency datapoints over the last 10 minutes: 60, 120, ... 600 seconds. Dimensions in name
    // order: moto matches GetMetricData dimensions by list order (AWS does not care).
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let now = chrono::Utc::now().timestamp();
    let data: Vec<MetricDatum> = (1..=10)
        .map(|i| {
            MetricDatum::builder()
                .metric_name("ReplicationLatency")
                .dimensions(
                    Dimension::builder()
                        .name("DestinationBucket")
                        .value(&stack.names.replica_bucket)
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("RuleId")
                        .value(&stack.names.rule_id)
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("SourceBucket")
                        .value(&stack.names.source_bucket)
                        .build(),
                )
                .timestamp(AwsDateTime::from_secs(now - 60 * (11 - i)))
                .value(60.0 * i as f64)
                .unit(StandardUnit::Seconds)
                .build()
        })
        .collect();
    cloudwatch
        .put_metric_data()
        .namespace("AWS/S3")
        .set_metric_data(Some(data))
        .send()
        .await
        .expect("put metric data");

    let monitor = AlarmMonitor::new(
        DynamoDbLedger::new(&sdk, &stack.names.table),
        SnsNotifier::new(&sdk, &stack.topic_arn),
        CloudWatchMetrics::new(&sdk),
        SystemClock,
        AlarmSettings::default(),
    );
    monitor
        .handle(&fixture("metric-alarm.json"))
        .await
        .expect("handled");
    monitor
        .handle(&fixture("metric-alarm.json"))
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
        .handle(&fixture("metric-ok.json"))
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
