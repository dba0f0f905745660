//! The handler against the in-memory ports.
use super::*;
use crate::delivery::page::Urgency;
use crate::event::ReplicationEventKind::*;
use crate::fakes::{InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier};
use crate::ledger::{ObjectStatus, PageClaim};
use chrono::Utc;
use std::sync::atomic::Ordering;

type Monitor<'a> = ReplicationMonitor<&'a InMemoryLedger, &'a RecordingNotifier, &'a ManualClock>;

struct World {
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    clock: ManualClock,
}

impl World {
    fn new() -> Self {
        World {
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            clock: ManualClock::new(Utc::now()),
        }
    }
    fn monitor(&self) -> Monitor<'_> {
        ReplicationMonitor::new(
            &self.ledger,
            &self.notifier,
            &self.clock,
            MonitorSettings::default(),
        )
    }
}

fn builder() -> NotificationBuilder {
    NotificationBuilder::new("src", "dst", "rule-1")
}

fn failure_bodies(count: usize, reasons: &[(&str, &str)]) -> Vec<String> {
    (0..count)
        .map(|i| {
            let (rule, reason) = reasons[i % reasons.len()];
            let mut b = builder();
            b.rule_id = rule.to_owned();
            NotificationBuilder::notification(vec![b.record(
                OperationFailedReplication,
                &format!("data/file {i}.bin"),
                &format!("v{i}"),
                Some(reason),
            )])
        })
        .collect()
}

/// One SQS message with this body, as the envelope reads it, on its first receive or not.
fn sqs_message(body: &str, first_delivery: bool) -> Vec<Message> {
    let (_, mut messages) =
        messages(&NotificationBuilder::sqs_event(&[body.to_owned()]).to_string())
            .expect("an SQS event");
    messages[0].first_delivery = first_delivery;
    messages
}

fn failed_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn storm_pages_once_per_incident_and_records_every_object() {
    let world = World::new();
    let monitor = world.monitor();
    let reasons = [
        ("rule-1", "DstPutObjectNotPermitted"),
        ("rule-1", "DstKmsKeyNotFound"),
        ("rule-2", "DstPutObjectNotPermitted"),
    ];
    let bodies = failure_bodies(1000, &reasons);
    for chunk in bodies.chunks(10) {
        let response = monitor
            .handle_value(&NotificationBuilder::sqs_event(chunk))
            .await
            .unwrap();
        assert!(failed_ids(&response).is_empty());
    }
    assert_eq!(world.notifier.pages().len(), 3);
    assert_eq!(world.ledger.objects().len(), 1000);
    assert!(world
        .ledger
        .objects()
        .iter()
        .all(|o| o.status() == ObjectStatus::Failed));
    let counts: Vec<u64> = world
        .ledger
        .incidents()
        .iter()
        .map(|i| i.event_count)
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 1000);
}

#[tokio::test]
async fn duplicates_and_reordering_change_nothing() {
    let once = World::new();
    let thrice = World::new();
    let b = builder();
    let bodies: Vec<String> = vec![
        NotificationBuilder::notification(vec![b.record(
            OperationMissedThreshold,
            "a b",
            "v1",
            None,
        )]),
        NotificationBuilder::notification(vec![b.record(
            OperationReplicatedAfterThreshold,
            "a b",
            "v1",
            None,
        )]),
        NotificationBuilder::notification(vec![b.record(
            OperationFailedReplication,
            "c",
            "v2",
            Some("AssumeRoleNotPermitted"),
        )]),
        NotificationBuilder::notification(vec![b.record(OperationNotTracked, "d", "v3", None)]),
    ];
    once.monitor()
        .handle_value(&NotificationBuilder::sqs_event(&bodies))
        .await
        .unwrap();
    let mut reversed = bodies.clone();
    reversed.reverse();
    for batch in [&reversed, &bodies, &reversed] {
        for body in batch.iter() {
            thrice
                .monitor()
                .handle_value(&NotificationBuilder::sqs_event(std::slice::from_ref(body)))
                .await
                .unwrap();
        }
    }
    assert_eq!(once.ledger.objects(), thrice.ledger.objects());
    let strip = |w: &World| {
        w.ledger
            .incidents()
            .into_iter()
            .map(|mut i| {
                i.opened_at = Utc::now();
                i.last_page_at = None;
                (
                    i.key.clone(),
                    i.event_count,
                    i.recovered_count,
                    i.pages_sent,
                    i.first_seen,
                    i.last_seen,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&once), strip(&thrice));
    let subjects = |w: &World| {
        let mut s: Vec<_> = w
            .notifier
            .pages()
            .iter()
            .map(|p| p.subject().to_owned())
            .collect();
        s.sort();
        s
    };
    assert_eq!(subjects(&once), subjects(&thrice));
    let objects = once.ledger.objects();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].key, "a b");
    assert_eq!(objects[0].status(), ObjectStatus::ReplicatedLate);
    // Late page, failure page, and a not-tracked notice.
    let pages = once.notifier.pages();
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages
            .iter()
            .filter(|p| p.urgency == Urgency::Notice)
            .count(),
        1
    );
}

#[tokio::test]
async fn summary_pages_at_most_once_per_window_while_failures_continue() {
    let world = World::new();
    let monitor = world.monitor();
    let bodies = failure_bodies(30, &[("rule-1", "DstBucketNotFound")]);
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies[0..10]))
        .await
        .unwrap();
    world.clock.advance(Duration::minutes(5));
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies[10..20]))
        .await
        .unwrap();
    assert_eq!(world.notifier.pages().len(), 1);
    world.clock.advance(Duration::minutes(10));
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies[20..25]))
        .await
        .unwrap();
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 2);
    assert!(
        pages[1].subject().contains("still failing"),
        "{}",
        pages[1].subject()
    );
    assert!(
        pages[1].body().contains("25 objects so far"),
        "{}",
        pages[1].body()
    );
    // Within the next window: counted, not paged.
    world.clock.advance(Duration::minutes(1));
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies[25..30]))
        .await
        .unwrap();
    assert_eq!(world.notifier.pages().len(), 2);
    assert_eq!(world.ledger.incidents()[0].event_count, 30);
}

#[tokio::test]
async fn failed_publish_is_retried_through_the_batch_and_pages_once() {
    let world = World::new();
    let monitor = world.monitor();
    let event =
        NotificationBuilder::sqs_event(&failure_bodies(3, &[("rule-1", "DstBucketUnversioned")]));
    world.notifier.fail_publishes.store(1, Ordering::SeqCst);
    let response = monitor.handle_value(&event).await.unwrap();
    assert_eq!(failed_ids(&response), ["msg-0", "msg-1", "msg-2"]);
    assert!(world.notifier.pages().is_empty());
    let response = monitor.handle_value(&event).await.unwrap();
    assert!(failed_ids(&response).is_empty());
    assert_eq!(world.notifier.pages().len(), 1);
    assert_eq!(world.ledger.incidents()[0].event_count, 3);
    monitor.handle_value(&event).await.unwrap();
    assert_eq!(world.notifier.pages().len(), 1);
}

#[tokio::test]
async fn page_sent_but_not_confirmed_acknowledges_its_messages() {
    let world = World::new();
    let monitor = world.monitor();
    let event =
        NotificationBuilder::sqs_event(&failure_bodies(2, &[("rule-1", "DstBucketNotFound")]));
    world.ledger.fail_confirms.store(1, Ordering::SeqCst);
    let response = monitor.handle_value(&event).await.unwrap();
    // Failing them would make their retry page again once the claim's lease ran out.
    assert!(failed_ids(&response).is_empty());
    assert_eq!(world.notifier.pages().len(), 1);
}

#[tokio::test]
async fn live_foreign_claim_sends_messages_back_until_it_expires() {
    let world = World::new();
    let monitor = world.monitor();
    let event =
        NotificationBuilder::sqs_event(&failure_bodies(1, &[("rule-1", "DstBucketNotFound")]));
    // A first delivery records the event but its page publish fails...
    world.notifier.fail_publishes.store(1, Ordering::SeqCst);
    monitor.handle_value(&event).await.unwrap();
    // ...and another invocation claims the page and dies before publishing.
    let key = world.ledger.incidents()[0].key.clone();
    let foreign = PageClaim {
        token: "dead-invocation".into(),
        at: world.clock.now(),
        expected_pages_sent: 0,
        lease: Duration::seconds(60),
    };
    assert!(matches!(
        world.ledger.claim_page(&key, &foreign).await.unwrap(),
        Claimed::Taken(_)
    ));
    // The retry must not be acknowledged while the claim is live, or the page is lost.
    let response = monitor.handle_value(&event).await.unwrap();
    assert_eq!(failed_ids(&response), ["msg-0"]);
    world.clock.advance(Duration::seconds(61));
    let response = monitor.handle_value(&event).await.unwrap();
    assert!(failed_ids(&response).is_empty());
    assert_eq!(world.notifier.pages().len(), 1);
}

#[tokio::test]
async fn failed_commit_fails_its_messages_and_the_retry_completes() {
    let world = World::new();
    let monitor = world.monitor();
    let mut bodies = failure_bodies(2, &[("rule-1", "DstBucketNotFound")]);
    bodies.push("{\"Records\": [".into());
    // Every send of the commit fails (the handler sends it three times).
    world.ledger.fail_commits.store(3, Ordering::SeqCst);
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies))
        .await
        .unwrap();
    let failed = failed_ids(&response);
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.contains(&"msg-2".to_owned()));
    assert_eq!(
        world.ledger.objects().len(),
        0,
        "a commit is all or nothing"
    );
    // The retry of the failed messages records the rest; the malformed one keeps failing (to the DLQ).
    let retry: Vec<String> = failed
        .iter()
        .map(|id| bodies[id[4..].parse::<usize>().unwrap()].clone())
        .collect();
    monitor
        .handle_value(&NotificationBuilder::sqs_event(&retry))
        .await
        .unwrap();
    assert_eq!(world.ledger.objects().len(), 2);
    assert_eq!(world.notifier.pages().len(), 1);
}

#[tokio::test]
async fn direct_and_sns_failures_fail_the_invocation() {
    let world = World::new();
    let monitor = world.monitor();
    let body = failure_bodies(1, &[("rule-1", "DstBucketNotFound")]).remove(0);
    let direct: Value = serde_json::from_str(&body).unwrap();
    world.ledger.fail_commits.store(3, Ordering::SeqCst);
    let error = monitor.handle_value(&direct).await.unwrap_err();
    assert!(error.to_string().contains("retry"), "{error}");
    assert!(monitor.handle_value(&direct).await.is_ok());
    let sns = serde_json::json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m1", "Message": "{\"Records\": [" }}]});
    assert!(monitor.handle_value(&sns).await.is_err());
    assert!(monitor
        .handle_value(&serde_json::json!({"unexpected": true}))
        .await
        .is_err());
}

#[tokio::test]
async fn test_events_and_other_events_are_acknowledged_quietly() {
    let world = World::new();
    let monitor = world.monitor();
    let test_event =
        serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "src"})
            .to_string();
    let put = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-11-23T03:00:00Z", "s3": {"bucket": {"name": "src"}, "object": {"key": "k"}}}]}).to_string();
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&[test_event, put]))
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty());
    assert!(world.notifier.pages().is_empty());
    assert_eq!(world.ledger.event_count(), 0);
}

/// A failure storm of a million object versions in one incident: recording it reads nothing,
/// and the summary page and the alarm page's backlog count read a handful of items, as they
/// would for ten objects (the fake counts reads as DynamoDB does).
#[tokio::test]
async fn million_object_incident_pages_and_summarises_with_constant_reads() {
    use super::Message;
    use crate::alarm::monitor::BacklogCounter;
    use crate::event::{NotificationRecord, ReplicationEvent, S3Notification};

    const OBJECTS: usize = 1_000_000;
    const PER_MESSAGE: usize = 100;
    let world = World::new();
    let monitor = world.monitor();
    let start = world.clock.now();
    let event = |i: usize| ReplicationEvent {
        kind: OperationFailedReplication,
        region: Some("us-east-1".into()),
        event_time: start,
        source_bucket: "src".into(),
        key: format!("data/{i:07}.bin"),
        version_id: Some("v1".into()),
        size: Some(1024),
        sequencer: None,
        rule_id: "rule-1".into(),
        destination_bucket: "dst".into(),
        destination_arn: "arn:aws:s3:::dst".into(),
        s3_operation: Some("OBJECT_PUT".into()),
        request_time: None,
        failure_reason: Some("DstPutObjectNotPermitted".into()),
        threshold_seconds: None,
        replication_time_seconds: None,
    };
    let message = |first: usize, count: usize| Message {
        id: format!("m{first}"),
        first_delivery: true,
        notification: Ok(S3Notification::Records(
            (first..first + count)
                .map(|i| NotificationRecord::Replication(Box::new(event(i))))
                .collect(),
        )),
    };
    // Batches of ten messages, as SQS delivers them.
    for batch in (0..OBJECTS).step_by(PER_MESSAGE * 10) {
        let messages = (batch..batch + PER_MESSAGE * 10)
            .step_by(PER_MESSAGE)
            .map(|first| message(first, PER_MESSAGE))
            .collect();
        let report = monitor.process(messages).await;
        assert!(report.failed_messages.is_empty(), "{:?}", report.errors);
    }
    let storm_reads = world.ledger.items_read.load(Ordering::Relaxed);
    let incident = world.ledger.incidents().remove(0);
    assert_eq!(incident.event_count, OBJECTS as u64);
    assert_eq!(incident.backlog_count, OBJECTS as i64);
    assert_eq!(world.notifier.pages().len(), 1, "the first page");
    assert_eq!(storm_reads, 0, "recording and the first page read nothing");

    // One more failure after the summary window: the summary page.
    world.clock.advance(Duration::minutes(16));
    world.ledger.items_read.store(0, Ordering::Relaxed);
    let report = monitor.process(vec![message(OBJECTS, 1)]).await;
    assert!(report.failed_messages.is_empty(), "{:?}", report.errors);
    let summary_reads = world.ledger.items_read.load(Ordering::Relaxed);
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 2);
    assert!(
        pages[1].subject().contains("1000001 objects"),
        "{}",
        pages[1].subject()
    );
    assert!(
        summary_reads <= 10,
        "summary page read {summary_reads} items"
    );

    // The alarm page's backlog count.
    world.ledger.items_read.store(0, Ordering::Relaxed);
    let backlog = world
        .ledger
        .count_backlog("src", Some("rule-1"), Some("dst"))
        .await
        .expect("counted");
    assert_eq!(backlog, OBJECTS as u64 + 1);
    let backlog_reads = world.ledger.items_read.load(Ordering::Relaxed);
    assert!(
        backlog_reads <= 10,
        "backlog count read {backlog_reads} items"
    );
}

/// A duplicate costs its cancelled commit and reads nothing: the cancellation answers the
/// stored record and incident, which is all a redelivery needs to see whether a page is owed.
#[tokio::test]
async fn duplicates_read_nothing() {
    let world = World::new();
    let monitor = world.monitor();
    let body = failure_bodies(1, &[("rule-1", "DstPutObjectNotPermitted")]).remove(0);
    let message = |first_delivery: bool| sqs_message(&body, first_delivery);
    let report = monitor.process(message(true)).await;
    assert_eq!((report.recorded, report.pages), (1, 1));
    let reads = || world.ledger.items_read.load(Ordering::Relaxed);
    assert_eq!(reads(), 0);

    let report = monitor.process(message(true)).await;
    assert_eq!((report.duplicates, report.pages), (1, 0));
    let report = monitor.process(message(false)).await;
    assert_eq!((report.duplicates, report.pages), (1, 0));
    assert_eq!(reads(), 0, "duplicates read nothing");
    assert_eq!(world.notifier.pages().len(), 1);
}

/// The ambiguous failure: the commit went through but its answer was lost (a timeout after the
/// write, a 5xx from a front end). Sent again with its token, it is answered as done: the event
/// is counted once and paged once, and nothing goes back for retry.
#[tokio::test]
async fn a_commit_whose_answer_was_lost_counts_once() {
    let world = World::new();
    let monitor = world.monitor();
    let bodies = failure_bodies(3, &[("rule-1", "DstPutObjectNotPermitted")]);
    world.ledger.lose_commits.store(1, Ordering::SeqCst);
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies))
        .await
        .expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let incident = world.ledger.incidents().remove(0);
    assert_eq!((incident.event_count, incident.backlog_count), (3, 3));
    assert_eq!(world.notifier.pages().len(), 1);
}

/// A commit that meets another transaction on one of its items (a storm's writers all count
/// into one incident) waits and goes again; nothing is lost or doubled.
#[tokio::test]
async fn a_commit_that_meets_another_transaction_goes_again() {
    let world = World::new();
    let monitor = world.monitor();
    let bodies = failure_bodies(4, &[("rule-1", "DstPutObjectNotPermitted")]);
    world.ledger.busy_commits.store(3, Ordering::SeqCst);
    let response = monitor
        .handle_value(&NotificationBuilder::sqs_event(&bodies))
        .await
        .expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let incident = world.ledger.incidents().remove(0);
    assert_eq!((incident.event_count, incident.backlog_count), (4, 4));
    assert_eq!(world.notifier.pages().len(), 1);
}

/// Two writes of one object in one batch (late, then arrived) whose commit keeps failing: nothing
/// is written (a record is never in without its count), the messages go back, and the retry
/// counts each event once.
#[tokio::test]
async fn a_failed_commit_writes_nothing_and_its_retry_counts_once() {
    let world = World::new();
    let monitor = world.monitor();
    let b = builder();
    let bodies: Vec<String> = [OperationMissedThreshold, OperationReplicatedAfterThreshold]
        .into_iter()
        .map(|kind| {
            NotificationBuilder::notification(vec![b.record(kind, "big/video.mp4", "v9", None)])
        })
        .collect();
    let event = NotificationBuilder::sqs_event(&bodies);
    world.ledger.fail_commits.store(10, Ordering::SeqCst);
    let response = monitor.handle_value(&event).await.expect("handled");
    assert_eq!(failed_ids(&response).len(), 2, "{response}");
    assert!(world.ledger.objects().is_empty(), "nothing written");
    assert!(world.ledger.incidents().is_empty(), "nothing counted");

    world.ledger.fail_commits.store(0, Ordering::SeqCst);
    let response = monitor.handle_value(&event).await.expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let response = monitor.handle_value(&event).await.expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let incident = world.ledger.incidents().remove(0);
    assert_eq!(
        (
            incident.event_count,
            incident.recovered_count,
            incident.backlog_count
        ),
        (1, 1, 0)
    );
}

/// Two processes (Lambda environments) counting into one incident: each remembers the incident
/// as it last saw it, so its picture lags the other's counts and pages. A stale picture costs
/// a failed condition or claim, never a count or a page: the summary page reports every object
/// both counted, and it goes out once.
#[tokio::test]
async fn processes_with_stale_pictures_of_an_incident_count_and_page_exactly() {
    let world = World::new();
    let first = world.monitor();
    let second = world.monitor();
    let bodies = failure_bodies(6, &[("rule-1", "DstPutObjectNotPermitted")]);
    let batch = |range: std::ops::Range<usize>| NotificationBuilder::sqs_event(&bodies[range]);
    for (monitor, range) in [(&first, 0..2), (&second, 2..4), (&first, 4..5)] {
        let response = monitor.handle_value(&batch(range)).await.expect("handled");
        assert!(failed_ids(&response).is_empty(), "{response}");
    }
    assert_eq!(world.notifier.pages().len(), 1, "the first page only");
    world.clock.advance(Duration::minutes(16));
    // The second process last saw the incident before the first one's third batch.
    let response = second.handle_value(&batch(5..6)).await.expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let incident = world.ledger.incidents().remove(0);
    assert_eq!((incident.event_count, incident.backlog_count), (6, 6));
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 2, "one summary page");
    assert!(
        pages[1].subject().contains("6 objects"),
        "{}",
        pages[1].subject()
    );
    // The first process's picture is older still: nothing more is due, and nothing is sent.
    let response = first.handle_value(&batch(5..6)).await.expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    assert_eq!(world.notifier.pages().len(), 2);
    assert_eq!(world.ledger.incidents()[0].event_count, 6);
}

/// A process whose picture of an incident predates another process's summary page counts a new
/// event. Its claim (made for the page it thought it owed) is refused with the incident as it
/// stands, and from that the summary it owes is still due: it is sent, once.
#[tokio::test]
async fn a_refused_claim_decides_again_from_the_incident_as_it_stands() {
    let world = World::new();
    let (first, second) = (world.monitor(), world.monitor());
    let bodies = failure_bodies(3, &[("rule-1", "DstPutObjectNotPermitted")]);
    let batch = |i: usize| NotificationBuilder::sqs_event(&bodies[i..=i]);
    first.handle_value(&batch(0)).await.expect("handled");
    world.clock.advance(Duration::minutes(16));
    second.handle_value(&batch(1)).await.expect("handled");
    assert_eq!(world.notifier.pages().len(), 2, "first page and a summary");
    world.clock.advance(Duration::minutes(16));
    // The first process still remembers one page sent, 32 minutes ago.
    let response = first.handle_value(&batch(2)).await.expect("handled");
    assert!(failed_ids(&response).is_empty(), "{response}");
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 3, "the summary that is due");
    assert!(
        pages[2].subject().contains("3 objects"),
        "{}",
        pages[2].subject()
    );
    assert_eq!(world.ledger.incidents()[0].pages_sent, 3);
}

/// Another process counted an event and failed to publish its summary; the message comes back
/// to a process whose memory of the incident predates that event. Memory says nothing is owed
/// (no event since the last page), so it reads the incident, finds the summary owed, sends it.
#[tokio::test]
async fn a_redelivery_does_not_trust_memory_that_hides_an_owed_summary() {
    let world = World::new();
    let (first, second) = (world.monitor(), world.monitor());
    let bodies = failure_bodies(2, &[("rule-1", "DstPutObjectNotPermitted")]);
    first
        .process(sqs_message(&bodies[0], true))
        .await
        .failed_messages
        .is_empty()
        .then_some(())
        .expect("first event");
    world.clock.advance(Duration::minutes(16));
    world.notifier.fail_publishes.store(1, Ordering::SeqCst);
    let report = second.process(sqs_message(&bodies[1], true)).await;
    assert_eq!((report.recorded, report.failed_messages.len()), (1, 1));
    assert_eq!(world.notifier.pages().len(), 1);
    // The retry reaches the first process.
    let report = first.process(sqs_message(&bodies[1], false)).await;
    assert!(report.failed_messages.is_empty(), "{:?}", report.errors);
    assert_eq!((report.duplicates, report.pages), (1, 1));
    let pages = world.notifier.pages();
    assert_eq!(pages.len(), 2);
    assert!(
        pages[1].subject().contains("2 objects"),
        "{}",
        pages[1].subject()
    );
}
