//! A failure storm against the local stack: 10,000 failure events over 3 distinct (rule, reason)
//! pairs, delivered as SQS batches of 10 by several concurrent invocations (as Lambda's SQS poller
//! does), produce exactly 3 incident pages and a ledger record for every failed object.

use futures::stream::{self, StreamExt};
use replmon_shared::event::ReplicationEventKind::OperationFailedReplication;
use replmon_shared::fakes::NotificationBuilder;
use replmon_tests::monitor_on_local_stack;
use std::collections::BTreeMap;

const EVENTS: usize = 10_000;
const CONCURRENT_INVOCATIONS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_of_10000_failures_pages_once_per_incident() {
    let (_moto, stack, monitor) = monitor_on_local_stack().await.expect("local stack");
    let pairs = [
        ("rule-a", "DstPutObjectNotPermitted"),
        ("rule-a", "DstKmsKeyNotFound"),
        ("rule-b", "AssumeRoleNotPermitted"),
    ];
    let bodies: Vec<String> = (0..EVENTS)
        .map(|i| {
            let (rule, reason) = pairs[i % pairs.len()];
            let b = NotificationBuilder::new(
                &stack.names.source_bucket,
                &stack.names.replica_bucket,
                rule,
            );
            NotificationBuilder::notification(vec![b.record(
                OperationFailedReplication,
                &format!("storm/{i:05} part.bin"),
                &format!("ver{i}"),
                Some(reason),
            )])
        })
        .collect();

    // Delivered as SQS would: batches of 10, several in flight; messages listed in
    // batchItemFailures (e.g. while another invocation holds the incident's page claim) come
    // back in a later round, as they would after the visibility timeout.
    let started = std::time::Instant::now();
    let mut pending: Vec<String> = bodies;
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(
            rounds <= 5,
            "{} messages still failing after 5 rounds",
            pending.len()
        );
        let retry: Vec<Vec<String>> = stream::iter(pending.chunks(10))
            .map(|chunk| {
                let monitor = &monitor;
                async move {
                    let response = monitor
                        .handle_value(&NotificationBuilder::sqs_event(chunk))
                        .await
                        .expect("handled");
                    let failed: Vec<usize> = response["batchItemFailures"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|f| {
                                    f["itemIdentifier"]
                                        .as_str()?
                                        .strip_prefix("msg-")?
                                        .parse()
                                        .ok()
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    failed
                        .into_iter()
                        .filter_map(|i| chunk.get(i).cloned())
                        .collect::<Vec<String>>()
                }
            })
            .buffer_unordered(CONCURRENT_INVOCATIONS)
            .collect()
            .await;
        pending = retry.into_iter().flatten().collect();
        eprintln!(
            "storm: round {rounds} done, {} messages to retry",
            pending.len()
        );
    }
    eprintln!(
        "storm: {EVENTS} events processed in {:?} ({rounds} rounds)",
        started.elapsed()
    );

    let pages = stack.drain_pages().await.unwrap();
    assert_eq!(
        pages.len(),
        3,
        "{:#?}",
        pages.iter().map(|p| &p.subject).collect::<Vec<_>>()
    );
    let mut reasons: Vec<_> = pages
        .iter()
        .map(|p| p.attribute("reason").to_owned())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "AssumeRoleNotPermitted",
            "DstKmsKeyNotFound",
            "DstPutObjectNotPermitted"
        ]
    );

    let objects = stack
        .partition(&format!("OBJECT#{}", stack.names.source_bucket))
        .await
        .unwrap();
    assert_eq!(objects.len(), EVENTS);
    assert!(objects.iter().all(|o| o["status"] == "FAILED"));
    let incidents = stack
        .partition(&format!("INCIDENT#{}", stack.names.source_bucket))
        .await
        .unwrap();
    assert_eq!(incidents.len(), 3);
    assert!(incidents.iter().all(|i| i["pages_sent"] == "1"));
    // Every object counted once, in its own incident: the counters on the incidents, and the
    // membership in each object record.
    let mut per_incident: BTreeMap<String, usize> = BTreeMap::new();
    for incident in &incidents {
        assert_eq!(incident["backlog_count"], incident["event_count"]);
        per_incident.insert(
            incident["sk"].clone(),
            incident["event_count"].parse().unwrap(),
        );
    }
    assert!(objects
        .iter()
        .all(|o| o["counted_in"] == format!("FAILED:{}#{}", o["failure_reason"], o["rule_id"])));
    assert_eq!(per_incident.len(), 3);
    assert!(
        per_incident
            .values()
            .all(|&n| n == EVENTS / 3 || n == EVENTS / 3 + 1),
        "{per_incident:?}"
    );
    assert_eq!(per_incident.values().sum::<usize>(), EVENTS);
}
