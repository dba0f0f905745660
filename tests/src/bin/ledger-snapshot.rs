//! Write the ledger of a fixed scenario, as this checkout's code leaves it, as DynamoDB JSON.
//!
//! `cargo run -p replmon-tests --bin ledger-snapshot -- tests/fixtures/ledger-v1.json` on the
//! release before the one-write ledger (1f1f1e5) produced the upgrade fixture: the migration test
//! loads it and checks that today's code counts what that release counted (kept under
//! `expected`, read back through that release's own ledger port). Run on a later release it
//! writes the same scenario in that release's layout, counted through its ports.

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use replmon_shared::alarm::monitor::BacklogCounter;
use replmon_shared::aws::{DynamoDbLedger, SnsNotifier};
use replmon_shared::event::ReplicationEventKind::*;
use replmon_shared::fakes::{ManualClock, NotificationBuilder};
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use replmon_tests::ledger_snapshot::{item_to_json, scan};
use replmon_tests::{sdk_config, MotoServer, Stack, StackNames};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<()> {
    let output = std::env::args()
        .nth(1)
        .context("usage: ledger-snapshot <output.json>")?;
    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;
    let names = &stack.names;
    let start: DateTime<Utc> = "2026-11-23T03:01:00Z".parse()?;
    let clock = ManualClock::new(start);
    let ledger = DynamoDbLedger::new(&sdk, &names.table);
    let monitor = ReplicationMonitor::new(
        &ledger,
        SnsNotifier::new(&sdk, &stack.topic_arn),
        &clock,
        MonitorSettings::default(),
    );
    let one = NotificationBuilder::new(&names.source_bucket, &names.replica_bucket, &names.rule_id);
    let mut other = NotificationBuilder::new(&names.source_bucket, &names.replica_bucket, "logs");
    other.event_time = one.event_time + Duration::seconds(30);
    let body = |b: &NotificationBuilder, kind, key: &str, version: &str, reason| {
        NotificationBuilder::notification(vec![b.record(kind, key, version, reason)])
    };
    let denied = Some("DstPutObjectNotPermitted");
    let kms = Some("DstKmsKeyNotFound");
    let mut first = Vec::new();
    for i in 0..6 {
        first.push(body(
            &one,
            OperationFailedReplication,
            &format!("data/part {i}.bin"),
            "v1",
            denied,
        ));
    }
    // Two of them also fail for another reason: members of two incidents.
    first.push(body(
        &one,
        OperationFailedReplication,
        "data/part 0.bin",
        "v1",
        kms,
    ));
    first.push(body(
        &one,
        OperationFailedReplication,
        "data/part 1.bin",
        "v1",
        kms,
    ));
    // Late objects, two of which arrive; one is late and then fails.
    for i in 0..4 {
        first.push(body(
            &one,
            OperationMissedThreshold,
            &format!("big/{i}.iso"),
            "v7",
            None,
        ));
    }
    first.push(body(
        &one,
        OperationReplicatedAfterThreshold,
        "big/0.iso",
        "v7",
        None,
    ));
    first.push(body(
        &one,
        OperationReplicatedAfterThreshold,
        "big/1.iso",
        "v7",
        None,
    ));
    first.push(body(
        &one,
        OperationFailedReplication,
        "big/3.iso",
        "v7",
        denied,
    ));
    first.push(body(
        &one,
        OperationNotTracked,
        "replica-edit.txt",
        "v2",
        None,
    ));
    first.push(body(
        &other,
        OperationFailedReplication,
        "logs/a.gz",
        "null",
        denied,
    ));
    first.push(body(
        &other,
        OperationFailedReplication,
        "logs/b.gz",
        "null",
        denied,
    ));
    for chunk in first.chunks(10) {
        monitor
            .handle_value(&NotificationBuilder::sqs_event(chunk))
            .await?;
    }
    // A redelivery, then failures that continue past the summary window: a summary page.
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&first[..5]))
        .await?;
    clock.advance(Duration::minutes(16));
    let later: Vec<String> = (6..9)
        .map(|i| {
            body(
                &one,
                OperationFailedReplication,
                &format!("data/part {i}.bin"),
                "v1",
                denied,
            )
        })
        .collect();
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&later))
        .await?;

    // What this release counts, through its own ports.
    let items = scan(&stack.dynamodb, &names.table).await?;
    let mut incidents = Vec::new();
    for item in &items {
        if item
            .get("entity")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            != Some("incident")
        {
            continue;
        }
        let incident = replmon_shared::aws::dynamodb::incident_from_item(item)?;
        incidents.push(json!({
            "id": incident.key.id(),
            "source_bucket": incident.key.source_bucket,
            "events": incident.event_count,
            "recovered": incident.recovered_count,
            "pages_sent": incident.pages_sent,
        }));
    }
    let mut backlog = Vec::new();
    for (rule, destination) in [
        (None, None),
        (
            Some(names.rule_id.as_str()),
            Some(names.replica_bucket.as_str()),
        ),
        (Some("logs"), Some(names.replica_bucket.as_str())),
    ] {
        let count = ledger
            .count_backlog(&names.source_bucket, rule, destination)
            .await?;
        backlog.push(json!({"source_bucket": names.source_bucket, "rule_id": rule, "destination_bucket": destination, "objects": count}));
    }
    let pages = stack.drain_pages().await?.len();
    let snapshot = json!({
        "written_by": format!("replmon {}, tests/src/bin/ledger-snapshot.rs", env!("CARGO_PKG_VERSION")),
        "table": names.table,
        "pages_sent": pages,
        "expected": { "incidents": incidents, "backlog": backlog },
        "items": items.iter().map(item_to_json).collect::<Vec<_>>(),
    });
    std::fs::write(&output, serde_json::to_string_pretty(&snapshot)? + "\n")
        .with_context(|| format!("writing {output}"))?;
    println!(
        "{} items, {} pages, written to {output}",
        items.len(),
        pages
    );
    Ok(())
}
