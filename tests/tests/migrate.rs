//! Upgrade: a ledger written by the release before the one-write ledger (the fixture
//! `tests/fixtures/ledger-v1.json`, written by that release's own code) is converted in place by
//! `replmon migrate`, counts what that release counted, and keeps counting exactly afterwards.
//! Before the migration, the new code counts nothing into an old incident and loses nothing.

use replmon_shared::alarm::monitor::BacklogCounter;
use replmon_shared::aws::{DynamoDbLedger, Migration};
use replmon_shared::event::ReplicationEventKind::*;
use replmon_shared::fakes::NotificationBuilder;
use replmon_shared::incident::Incident;
use replmon_shared::status::LedgerReader;
use replmon_tests::ledger_snapshot::{load, scan};
use replmon_tests::{build_replmon, monitor_on_local_stack, sdk_config, MotoServer, Stack};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

const SOURCE: &str = "replmon-demo-source";
const REPLICA: &str = "replmon-demo-replica";
const RULE: &str = "replicate-everything";
const DENIED: &str =
    "REPLICATION#replmon-demo-replica#FAILED:DstPutObjectNotPermitted#replicate-everything";
const LATE: &str = "REPLICATION#replmon-demo-replica#LATE#replicate-everything";

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ledger-v1.json"
    ))
    .expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

async fn loaded() -> (
    MotoServer,
    Stack,
    replmon_tests::AwsMonitor,
    DynamoDbLedger,
    Value,
) {
    let (moto, stack, monitor) = monitor_on_local_stack().await.expect("local stack");
    let snapshot = fixture();
    assert_eq!(snapshot["table"], stack.names.table.as_str());
    let loaded = load(&stack.dynamodb, &stack.names.table, &snapshot)
        .await
        .expect("fixture loaded");
    assert_eq!(loaded, 42);
    let sdk = sdk_config(&moto.endpoint()).await;
    let ledger = DynamoDbLedger::new(&sdk, &stack.names.table);
    (moto, stack, monitor, ledger, snapshot)
}

async fn incidents(ledger: &DynamoDbLedger) -> BTreeMap<String, Incident> {
    ledger
        .incidents(SOURCE)
        .await
        .expect("incidents read")
        .into_iter()
        .map(|i| (i.key.id(), i))
        .collect()
}

/// What the old release counted (the fixture's `expected`) equals what this one reads.
async fn assert_counts_as_written(ledger: &DynamoDbLedger, snapshot: &Value) {
    let now = incidents(ledger).await;
    let expected = snapshot["expected"]["incidents"].as_array().expect("list");
    assert_eq!(now.len(), expected.len());
    for old in expected {
        let id = old["id"].as_str().expect("id");
        let incident = &now[id];
        assert_eq!(
            incident.event_count,
            old["events"].as_u64().expect("n"),
            "{id}"
        );
        assert_eq!(
            incident.recovered_count,
            old["recovered"].as_u64().expect("n"),
            "{id}"
        );
        assert_eq!(
            incident.pages_sent,
            old["pages_sent"].as_u64().expect("n"),
            "{id}"
        );
    }
    for scope in snapshot["expected"]["backlog"].as_array().expect("list") {
        let count = ledger
            .count_backlog(
                SOURCE,
                scope["rule_id"].as_str(),
                scope["destination_bucket"].as_str(),
            )
            .await
            .expect("backlog counted");
        assert_eq!(count, scope["objects"].as_u64().expect("n"), "{scope}");
    }
}

fn failed_ids(response: &Value) -> usize {
    response["batchItemFailures"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_counts_what_the_old_release_counted_once_and_then_counts_on() {
    let (moto, stack, monitor, ledger, snapshot) = loaded().await;
    // As an operator runs it, with the command line.
    let out = Command::new(build_replmon())
        .arg("migrate")
        .env_clear()
        .envs(stack.function_env(&moto.endpoint()))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("running replmon migrate");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 19 old memberships of failures, lateness and the not-tracked event, and 2 recoveries.
    assert!(
        printed
            .contains("1 source buckets, 5 incidents converted, 0 already current, 21 memberships"),
        "{printed}"
    );
    assert_counts_as_written(&ledger, &snapshot).await;

    // Again, as after an interruption: nothing changes.
    let before = scan(&stack.dynamodb, &stack.names.table)
        .await
        .expect("scan");
    let again = Migration { ledger: &ledger }
        .run()
        .await
        .expect("migrated again");
    assert_eq!(again.incidents_migrated, 0);
    assert_eq!(again.incidents_already_current, 5);
    assert_eq!(
        scan(&stack.dynamodb, &stack.names.table)
            .await
            .expect("scan"),
        before
    );
    assert_counts_as_written(&ledger, &snapshot).await;

    // Redeliveries of events the old release recorded are not counted again, including the
    // object that failed for two reasons (whose old record kept only the latest).
    let one = NotificationBuilder::new(SOURCE, REPLICA, RULE);
    let body = |kind, key: &str, version: &str, reason| {
        NotificationBuilder::notification(vec![one.record(kind, key, version, reason)])
    };
    let denied = Some("DstPutObjectNotPermitted");
    let kms = Some("DstKmsKeyNotFound");
    let redelivered = vec![
        body(OperationFailedReplication, "data/part 0.bin", "v1", denied),
        body(OperationFailedReplication, "data/part 0.bin", "v1", kms),
        body(OperationFailedReplication, "data/part 1.bin", "v1", denied),
        body(OperationMissedThreshold, "big/0.iso", "v7", None),
        body(OperationReplicatedAfterThreshold, "big/1.iso", "v7", None),
    ];
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&redelivered))
        .await
        .expect("handled");
    assert_eq!(failed_ids(&response), 0, "{response}");
    assert_counts_as_written(&ledger, &snapshot).await;

    // New events count once: a new failure, and the late object that finally arrives.
    let new = vec![
        body(OperationFailedReplication, "data/part 9.bin", "v1", denied),
        body(OperationReplicatedAfterThreshold, "big/2.iso", "v7", None),
    ];
    for _ in 0..2 {
        let response = monitor
            .handle_value(&NotificationBuilder::sqs_event(&new))
            .await
            .expect("handled");
        assert_eq!(failed_ids(&response), 0, "{response}");
    }
    let now = incidents(&ledger).await;
    assert_eq!(now[DENIED].event_count, 11);
    assert_eq!(now[DENIED].backlog_count, 9);
    assert_eq!(now[LATE].event_count, 4);
    assert_eq!(now[LATE].recovered_count, 3);
    assert_eq!(now[LATE].backlog_count, 0);
    assert_eq!(
        ledger
            .count_backlog(SOURCE, None, None)
            .await
            .expect("backlog"),
        13
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_migration_old_incidents_are_not_counted_and_nothing_is_lost() {
    let (_moto, stack, monitor, ledger, snapshot) = loaded().await;
    let before = scan(&stack.dynamodb, &stack.names.table)
        .await
        .expect("scan");
    let one = NotificationBuilder::new(SOURCE, REPLICA, RULE);
    let new = NotificationBuilder::notification(vec![one.record(
        OperationFailedReplication,
        "data/part 9.bin",
        "v1",
        Some("DstPutObjectNotPermitted"),
    )]);
    let event = NotificationBuilder::sqs_event(std::slice::from_ref(&new));
    let response = monitor.handle_value(&event).await.expect("handled");
    // Sent back for retry, nothing written (a record goes in only with its count): the table
    // is as it was.
    assert_eq!(failed_ids(&response), 1, "{response}");
    assert_eq!(
        scan(&stack.dynamodb, &stack.names.table)
            .await
            .expect("scan"),
        before
    );

    Migration { ledger: &ledger }.run().await.expect("migrated");
    assert_counts_as_written(&ledger, &snapshot).await;
    // The retry, after the migration, counts it once.
    let response = monitor.handle_value(&event).await.expect("handled");
    assert_eq!(failed_ids(&response), 0, "{response}");
    let now = incidents(&ledger).await;
    assert_eq!(now[DENIED].event_count, 11);
    assert_eq!(now[DENIED].backlog_count, 9);
}
