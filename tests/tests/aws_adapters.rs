//! The monitor with its real AWS adapters (DynamoDB ledger, SNS notifier) against the local moto
//! server, through the real SDK clients: pages read back from the SQS subscription, ledger scanned.

use replmon_shared::aws::{sdk_config as lambda_sdk_config, DynamoDbLedger, SnsNotifier};
use replmon_shared::clock::SystemClock;
use replmon_shared::config::AwsSettings;
use replmon_shared::event::ReplicationEventKind::*;
use replmon_shared::fakes::NotificationBuilder;
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use replmon_tests::{
    monitor_on_local_stack, sdk_config, AwsMonitor, MotoServer, Stack, StackNames,
};
use serde_json::Value;

async fn setup() -> (MotoServer, Stack, AwsMonitor) {
    monitor_on_local_stack().await.expect("local stack")
}

fn builder(stack: &Stack) -> NotificationBuilder {
    NotificationBuilder::new(
        &stack.names.source_bucket,
        &stack.names.replica_bucket,
        &stack.names.rule_id,
    )
}

fn failed_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_is_recorded_and_paged_once_with_attributes() {
    let (_moto, stack, monitor) = setup().await;
    let b = builder(&stack);
    let body = NotificationBuilder::notification(vec![b.record(
        OperationFailedReplication,
        "reports/q3 summary(2).csv",
        "v1",
        Some("DstPutObjectNotPermitted"),
    )]);
    let event = NotificationBuilder::sqs_event(&[body]);
    for _ in 0..3 {
        let response = monitor.handle_value(&event).await.expect("handled");
        assert!(failed_ids(&response).is_empty(), "{response}");
    }
    let pages = stack.drain_pages().await.unwrap();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let page = &pages[0];
    assert!(page.subject.len() <= 100);
    assert!(
        page.subject
            .starts_with("[CRITICAL] S3 replication failing (DstPutObjectNotPermitted)"),
        "{}",
        page.subject
    );
    assert_eq!(page.attribute("severity"), "critical");
    assert_eq!(page.attribute("kind"), "replication-failure");
    assert_eq!(page.attribute("source_bucket"), "replmon-demo-source");
    assert!(
        page.message.contains("reports/q3 summary(2).csv"),
        "{}",
        page.message
    );
    assert!(page.message.contains("Fix:"), "{}", page.message);

    let objects = stack.ledger_entities("object").await.unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["key"], "reports/q3 summary(2).csv");
    assert_eq!(objects[0]["status"], "FAILED");
    assert_eq!(objects[0]["failure_reason"], "DstPutObjectNotPermitted");
    assert!(objects[0]["expires_at"].parse::<i64>().unwrap() > 0);
    let incidents = stack.ledger_entities("incident").await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["pages_sent"], "1");
    // Its one membership is in the object record, counted once on the incident.
    assert_eq!(
        objects[0]["counted_in"],
        "FAILED:DstPutObjectNotPermitted#replicate-everything"
    );
    assert_eq!(incidents[0]["event_count"], "1");
    assert_eq!(incidents[0]["backlog_count"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_s3_keys_are_recorded() {
    let (_moto, stack, monitor) = setup().await;
    let b = builder(&stack);
    // S3 allows 1,024-byte keys; with destination and version that exceeds DynamoDB's sort key limit.
    let key = format!("deep/{}", "k".repeat(1019));
    let body = NotificationBuilder::notification(vec![b.record(
        OperationFailedReplication,
        &key,
        "v1",
        Some("DstBucketNotFound"),
    )]);
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&[body]))
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty(), "{response}");
    let objects = stack.ledger_entities("object").await.unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["key"], key);
    assert!(objects[0]["sk"].len() <= 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_then_replicated_out_of_order() {
    let (_moto, stack, monitor) = setup().await;
    let b = builder(&stack);
    let arrived = NotificationBuilder::notification(vec![b.record(
        OperationReplicatedAfterThreshold,
        "big/video.mp4",
        "v9",
        None,
    )]);
    let late = NotificationBuilder::notification(vec![b.record(
        OperationMissedThreshold,
        "big/video.mp4",
        "v9",
        None,
    )]);
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&[arrived]))
        .await
        .unwrap();
    assert!(stack.drain_pages().await.unwrap().is_empty());
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&[late]))
        .await
        .unwrap();
    let objects = stack.ledger_entities("object").await.unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["status"], "REPLICATED_LATE");
    // Late and recovered, each counted once on the late incident, which has nothing missing.
    assert_eq!(
        objects[0]["counted_in"],
        "LATE#replicate-everything,RECOVERED#replicate-everything"
    );
    let incidents = stack.ledger_entities("incident").await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        (
            incidents[0]["event_count"].as_str(),
            incidents[0]["recovered_count"].as_str(),
            incidents[0]["backlog_count"].as_str()
        ),
        ("1", "1", "0")
    );
    let pages = stack.drain_pages().await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].attribute("kind"), "replication-late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ledger_lists_every_message_for_retry() {
    let moto = MotoServer::start().expect("moto server");
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await.unwrap();
    // The function's SdkConfig with short timeouts, pointed at a port where nothing listens.
    let dead = format!("http://127.0.0.1:{}", replmon_tests::free_port().unwrap());
    let settings = AwsSettings {
        operation_timeout: std::time::Duration::from_secs(2),
        attempt_timeout: std::time::Duration::from_millis(500),
        connect_timeout: std::time::Duration::from_millis(200),
        max_attempts: 2,
        warm_up: false,
    };
    std::env::set_var("AWS_ENDPOINT_URL", &dead);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let dead_sdk = lambda_sdk_config(&settings, "replmon-tests").await;
    let monitor = ReplicationMonitor::new(
        DynamoDbLedger::new(&dead_sdk, &stack.names.table),
        SnsNotifier::new(&sdk, &stack.topic_arn),
        SystemClock,
        MonitorSettings::default(),
    );
    let b = builder(&stack);
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
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies))
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), ["msg-0", "msg-1", "msg-2"]);
    assert!(stack.drain_pages().await.unwrap().is_empty());
}

/// A stored record the ledger cannot read (here: its rule ID removed by hand) fails only the
/// messages of that object, which go back for retry and then to the dead-letter queue; the
/// other objects of the batch are recorded and paged as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_stored_record_fails_only_its_own_message() {
    let (_moto, stack, monitor) = setup().await;
    let b = builder(&stack);
    let failure = |key: &str| {
        NotificationBuilder::notification(vec![b.record(
            OperationFailedReplication,
            key,
            "v1",
            Some("DstPutObjectNotPermitted"),
        )])
    };
    let first = NotificationBuilder::sqs_event(&[failure("a.bin")]);
    let response = monitor.handle_value(&first).await.expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let objects = stack.ledger_entities("object").await.unwrap();
    stack
        .dynamodb
        .update_item()
        .table_name(&stack.names.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(objects[0]["pk"].clone()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(objects[0]["sk"].clone()),
        )
        .update_expression("REMOVE rule_id")
        .send()
        .await
        .expect("corrupted by hand");

    let batch = NotificationBuilder::sqs_event(&[failure("a.bin"), failure("b.bin")]);
    let response = monitor.handle_value(&batch).await.expect("handled");
    assert_eq!(failed_ids(&response), ["msg-0"], "{response}");
    let objects = stack.ledger_entities("object").await.unwrap();
    let keys: Vec<&str> = objects.iter().map(|o| o["key"].as_str()).collect();
    assert_eq!(keys, ["a.bin", "b.bin"]);
    let incidents = stack.ledger_entities("incident").await.unwrap();
    assert_eq!(incidents[0]["event_count"], "2");
}
