//! The replication-events handler: S3 replication notifications in, ledger records and pages out.
//!
//! Generic over the ledger, notifier and clock ports, so the same code runs against DynamoDB and
//! SNS in Lambda and against in-memory fakes in unit tests and the benchmark.

use crate::clock::Clock;
use crate::envelope::{self, Delivery, EnvelopeError, Message};
use crate::event::{NotificationRecord, ReplicationEvent, ReplicationEventKind, S3Notification};
use crate::incident::{IncidentCause, IncidentKey, SampleObject};
use crate::ledger::{Ledger, LedgerError, PageClaim, PageSent, Recorded};
use crate::page::{Notifier, NotifyError};
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tunables of the replication-events function (see the README's configuration table).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// At most one summary page per incident per window while failures continue.
    pub summary_window: Duration,
    /// How many affected keys a page lists.
    pub sample_keys: usize,
    /// How long ledger items live after their last update (DynamoDB TTL).
    pub ledger_ttl: Duration,
    /// How long a page claim blocks other invocations if its holder dies before publishing.
    pub page_lease: Duration,
    /// Ledger writes in flight at once within one invocation.
    pub concurrency: usize,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            summary_window: Duration::minutes(15),
            sample_keys: 10,
            ledger_ttl: Duration::days(90),
            page_lease: Duration::seconds(60),
            concurrency: 16,
        }
    }
}

/// What one invocation did; logged, and returned to direct and SNS invokers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InvocationReport {
    pub messages: usize,
    pub replication_events: usize,
    pub recorded: usize,
    pub duplicates: usize,
    /// Test events, non-replication events and unknown replication event names.
    pub acknowledged: usize,
    pub pages: usize,
    pub notices: usize,
    /// Ids of messages that must be retried (bad input or a failed write/publish).
    pub failed_messages: Vec<String>,
    /// One line per failure, for the error returned to Lambda.
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Unrecognised(#[from] EnvelopeError),
    /// The invocation must fail so Lambda (direct) or SNS retries it; everything is idempotent.
    #[error("{failed} of {total} messages not processed, retry needed: {first_error}")]
    Incomplete {
        failed: usize,
        total: usize,
        first_error: String,
    },
}

/// Why an incident's page step failed.
#[derive(Debug, thiserror::Error)]
enum SettleError {
    #[error("another invocation is sending this incident's page; retry to confirm it went out")]
    ClaimHeld,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

pub struct ReplicationMonitor<L, N, C> {
    ledger: L,
    notifier: N,
    clock: C,
    settings: MonitorSettings,
}

/// Events of one incident within one invocation.
struct IncidentBatch {
    /// Events new to the ledger (the rest are redeliveries).
    new_events: usize,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    samples: BTreeSet<SampleObject>,
    messages: BTreeSet<usize>,
}

enum Settled {
    Quiet,
    Paged { notice: bool },
}

impl<L: Ledger, N: Notifier, C: Clock> ReplicationMonitor<L, N, C> {
    pub fn new(ledger: L, notifier: N, clock: C, settings: MonitorSettings) -> Self {
        ReplicationMonitor {
            ledger,
            notifier,
            clock,
            settings,
        }
    }

    /// The Lambda entry point: any supported payload (as JSON text) in, the response Lambda
    /// expects out.
    pub async fn handle(&self, payload: &str) -> Result<Value, HandlerError> {
        let (delivery, messages) = envelope::open(payload).inspect_err(|e| {
            tracing::error!(error = %e, "rejected invocation payload");
        })?;
        let total = messages.len();
        let report = self.process(messages).await;
        tracing::info!(
            delivery = delivery.as_str(),
            messages = report.messages,
            replication_events = report.replication_events,
            recorded = report.recorded,
            duplicates = report.duplicates,
            acknowledged = report.acknowledged,
            pages = report.pages,
            notices = report.notices,
            failed = report.failed_messages.len(),
            "invocation processed"
        );
        match delivery {
            Delivery::Sqs => Ok(json!({
                "batchItemFailures": report
                    .failed_messages
                    .iter()
                    .map(|id| json!({ "itemIdentifier": id }))
                    .collect::<Vec<_>>()
            })),
            Delivery::Direct | Delivery::Sns if report.failed_messages.is_empty() => {
                Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
            }
            Delivery::Direct | Delivery::Sns => Err(HandlerError::Incomplete {
                failed: report.failed_messages.len(),
                total,
                first_error: report.errors.first().cloned().unwrap_or_default(),
            }),
        }
    }

    /// [`Self::handle`] for an already parsed payload.
    pub async fn handle_value(&self, payload: &Value) -> Result<Value, HandlerError> {
        self.handle(&payload.to_string()).await
    }

    /// Record every message's events, then settle each touched incident (page when due).
    /// A message is reported failed when it is unreadable or any of its writes or pages failed;
    /// everything it did is idempotent, so its retry completes the work without doubling it.
    pub async fn process(&self, messages: Vec<Message>) -> InvocationReport {
        let mut report = InvocationReport {
            messages: messages.len(),
            ..Default::default()
        };
        let mut failed: BTreeSet<usize> = BTreeSet::new();
        let mut events: Vec<(usize, ReplicationEvent)> = Vec::new();

        let mut ids = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            ids.push(message.id);
            let message_id = &ids[index];
            match message.notification {
                Err(error) => {
                    tracing::error!(%message_id, %error, "unreadable message; it will be retried and then dead-lettered");
                    report.errors.push(format!("message {message_id}: {error}"));
                    failed.insert(index);
                }
                Ok(S3Notification::TestEvent { bucket }) => {
                    tracing::info!(%message_id, bucket = bucket.as_deref().unwrap_or(""), "s3:TestEvent acknowledged");
                    report.acknowledged += 1;
                }
                Ok(S3Notification::Records(records)) => {
                    for record in records {
                        match record {
                            NotificationRecord::Replication(event) => {
                                events.push((index, *event));
                            }
                            NotificationRecord::UnknownReplication { event_name } => {
                                tracing::warn!(%message_id, event_name, "replication event type unknown to this version; acknowledged, not recorded");
                                report.acknowledged += 1;
                            }
                            NotificationRecord::Other { event_name } => {
                                tracing::info!(%message_id, event_name, "not a replication event; acknowledged");
                                report.acknowledged += 1;
                            }
                        }
                    }
                }
            }
        }
        report.replication_events = events.len();

        // One incident key per group, built once: events of a storm share a handful of keys.
        let mut group_of: FxHashMap<(&str, &str, &str, Option<&str>, u8), usize> =
            FxHashMap::default();
        let mut keys: Vec<IncidentKey> = Vec::new();
        let event_groups: Vec<usize> = events
            .iter()
            .map(|(_, event)| {
                let cause = match event.kind {
                    ReplicationEventKind::OperationFailedReplication => 0,
                    ReplicationEventKind::OperationNotTracked => 2,
                    _ => 1,
                };
                let borrowed = (
                    event.source_bucket.as_str(),
                    event.rule_id.as_str(),
                    event.destination_bucket.as_str(),
                    // As IncidentKey::for_event: no reason and an empty one are the same incident.
                    if cause == 0 {
                        event.failure_reason.as_deref().filter(|r| !r.is_empty())
                    } else {
                        None
                    },
                    cause,
                );
                *group_of.entry(borrowed).or_insert_with(|| {
                    keys.push(IncidentKey::for_event(event));
                    keys.len() - 1
                })
            })
            .collect();

        let now = self.clock.now();
        let expires_at = now + self.settings.ledger_ttl;
        let keys = &keys;
        let outcomes: Vec<_> = stream::iter(events.iter().zip(&event_groups))
            .map(|((index, event), &group)| async move {
                let outcome = self
                    .ledger
                    .record_event(event, &keys[group], expires_at)
                    .await;
                (*index, event, group, outcome)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;

        let mut batches: BTreeMap<usize, IncidentBatch> = BTreeMap::new();
        for (index, event, group, outcome) in outcomes {
            let new = match outcome {
                Ok(Recorded::New) => {
                    report.recorded += 1;
                    true
                }
                Ok(Recorded::Duplicate) => {
                    report.duplicates += 1;
                    false
                }
                Err(error) => {
                    tracing::error!(message_id = %ids[index], key = %event.key, %error, retryable = error.retryable(), "recording a replication event failed");
                    report
                        .errors
                        .push(format!("message {}: {error}", ids[index]));
                    failed.insert(index);
                    continue;
                }
            };
            // Arrivals of late objects only update counts; they never page.
            if event.kind == ReplicationEventKind::OperationReplicatedAfterThreshold {
                continue;
            }
            let batch = batches.entry(group).or_insert_with(|| IncidentBatch {
                new_events: 0,
                first: event.event_time,
                last: event.event_time,
                samples: BTreeSet::new(),
                messages: BTreeSet::new(),
            });
            batch.new_events += usize::from(new);
            batch.first = batch.first.min(event.event_time);
            batch.last = batch.last.max(event.event_time);
            batch.messages.insert(index);
            // Keep the first keys in order; clone only what may be kept.
            let full = batch.samples.len() >= self.settings.sample_keys;
            if !full
                || batch
                    .samples
                    .last()
                    .is_some_and(|last| event.key < last.key)
            {
                batch.samples.insert(SampleObject {
                    key: event.key.clone(),
                    version_id: event.version_id.clone(),
                });
                if batch.samples.len() > self.settings.sample_keys {
                    batch.samples.pop_last();
                }
            }
        }

        let settled: Vec<_> = stream::iter(batches.iter())
            .map(|(&group, batch)| async move {
                let key = &keys[group];
                (key, batch, self.settle(key, batch).await)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (key, batch, result) in settled {
            match result {
                Ok(Settled::Quiet) => {}
                Ok(Settled::Paged { notice: false }) => report.pages += 1,
                Ok(Settled::Paged { notice: true }) => report.notices += 1,
                Err(error) => {
                    tracing::error!(incident = %key.id(), source_bucket = %key.source_bucket, %error, "settling an incident failed; its messages will be retried");
                    report
                        .errors
                        .push(format!("incident {}: {error}", key.id()));
                    failed.extend(batch.messages.iter().copied());
                }
            }
        }

        report.failed_messages = failed.into_iter().map(|i| ids[i].clone()).collect();
        report
    }

    /// Bring the incident up to date and send its page if one is due.
    async fn settle(
        &self,
        key: &IncidentKey,
        batch: &IncidentBatch,
    ) -> Result<Settled, SettleError> {
        let now = self.clock.now();
        // Redeliveries change nothing, unless an earlier attempt died before its incident was
        // brought up to date: then this is the retry that finishes the job.
        let stored = if batch.new_events == 0 {
            self.ledger.incident(key).await?.filter(|incident| {
                incident.first_seen.is_some_and(|t| t <= batch.first)
                    && incident.last_seen.is_some_and(|t| t >= batch.last)
            })
        } else {
            None
        };
        let mut incident = match stored {
            Some(incident) => incident,
            None => {
                self.ledger
                    .touch_incident(
                        key,
                        (batch.first, batch.last),
                        now,
                        now + self.settings.ledger_ttl,
                    )
                    .await?
            }
        };
        if !incident.may_be_due(now, self.settings.summary_window) {
            return Ok(Settled::Quiet);
        }
        let claim = PageClaim {
            token: claim_token(now),
            at: now,
            expected_pages_sent: incident.pages_sent,
            lease: self.settings.page_lease,
        };
        if !self.ledger.claim_page(key, &claim).await? {
            // Someone paged since we read the incident: nothing to do. Or someone holds a live
            // claim and is paging right now; if that holder died, acknowledging here would lose
            // the page, so the messages go back for retry and find the outcome (or an expired
            // lease) next time.
            let paged_since = self
                .ledger
                .incident(key)
                .await?
                .is_some_and(|current| current.pages_sent > claim.expected_pages_sent);
            if paged_since {
                return Ok(Settled::Quiet);
            }
            return Err(SettleError::ClaimHeld);
        }
        // Counted under the claim, so the page reports what the ledger held when it went out.
        let counts = match self.ledger.count_events(key).await {
            Ok(counts) => counts,
            Err(error) => {
                self.release(key, &claim).await;
                return Err(error.into());
            }
        };
        incident.event_count = counts.events;
        incident.recovered_count = counts.recovered;
        let Some(due) = incident.page_due(now, self.settings.summary_window) else {
            // A redelivery touched the incident but nothing new was counted.
            self.release(key, &claim).await;
            return Ok(Settled::Quiet);
        };
        let samples: Vec<_> = batch.samples.iter().cloned().collect();
        let page = incident.page(due, &samples, self.settings.summary_window);
        if let Err(error) = self.notifier.publish(&page).await {
            self.release(key, &claim).await;
            return Err(error.into());
        }
        let sent = PageSent {
            at: now,
            event_count: incident.event_count,
        };
        // The page is out. Failing its messages now would only get them retried, and the retry
        // would page again once this claim's lease ran out: a second page for the same incident.
        // So a failed confirmation is logged and the messages are acknowledged; the unconfirmed
        // claim keeps other invocations from paging until its lease ends.
        if let Err(error) = self.ledger.confirm_page(key, &claim, sent).await {
            tracing::error!(incident = %key.id(), source_bucket = %key.source_bucket, %error, "page sent but not recorded in the ledger; its messages are acknowledged so that no retry pages again");
        }
        tracing::info!(
            incident = %key.id(),
            source_bucket = %key.source_bucket,
            cause = %key.cause.code(),
            objects = incident.event_count,
            page_type = ?due,
            subject = page.subject(),
            "page sent"
        );
        Ok(Settled::Paged {
            notice: key.cause == IncidentCause::NotTracked,
        })
    }

    async fn release(&self, key: &IncidentKey, claim: &PageClaim) {
        if let Err(error) = self.ledger.release_page(key, claim).await {
            tracing::warn!(%error, incident = %key.id(), "could not release the page claim; it expires with its lease");
        }
    }
}

/// Unique per claim: time, process and a counter (no randomness needed).
fn claim_token(now: DateTime<Utc>) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        now.timestamp_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ReplicationEventKind::*;
    use crate::fakes::{InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier};
    use crate::ledger::ObjectStatus;
    use crate::page::Urgency;
    use std::sync::atomic::Ordering;

    type Monitor<'a> =
        ReplicationMonitor<&'a InMemoryLedger, &'a RecordingNotifier, &'a ManualClock>;

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
        let event = NotificationBuilder::sqs_event(&failure_bodies(
            3,
            &[("rule-1", "DstBucketUnversioned")],
        ));
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
        assert!(world.ledger.claim_page(&key, &foreign).await.unwrap());
        // The retry must not be acknowledged while the claim is live, or the page is lost.
        let response = monitor.handle_value(&event).await.unwrap();
        assert_eq!(failed_ids(&response), ["msg-0"]);
        world.clock.advance(Duration::seconds(61));
        let response = monitor.handle_value(&event).await.unwrap();
        assert!(failed_ids(&response).is_empty());
        assert_eq!(world.notifier.pages().len(), 1);
    }

    #[tokio::test]
    async fn failed_write_fails_only_its_message() {
        let world = World::new();
        let monitor = world.monitor();
        let mut bodies = failure_bodies(2, &[("rule-1", "DstBucketNotFound")]);
        bodies.push("{\"Records\": [".into());
        world.ledger.fail_records.store(1, Ordering::SeqCst);
        let response = monitor
            .handle_value(&NotificationBuilder::sqs_event(&bodies))
            .await
            .unwrap();
        let failed = failed_ids(&response);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed.contains(&"msg-2".to_owned()));
        assert_eq!(world.ledger.objects().len(), 1);
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
        world.ledger.fail_records.store(1, Ordering::SeqCst);
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
}
