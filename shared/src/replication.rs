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
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("incident {0} vanished after its events were recorded")]
    Missing(String),
}

pub struct ReplicationMonitor<L, N, C> {
    ledger: L,
    notifier: N,
    clock: C,
    settings: MonitorSettings,
}

/// Events of one incident within one invocation.
struct IncidentBatch {
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

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn notifier(&self) -> &N {
        &self.notifier
    }

    /// The Lambda entry point: any supported payload in, the response Lambda expects out.
    pub async fn handle(&self, payload: &Value) -> Result<Value, HandlerError> {
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

        for (index, message) in messages.iter().enumerate() {
            match &message.notification {
                Err(error) => {
                    tracing::error!(message_id = %message.id, %error, "unreadable message; it will be retried and then dead-lettered");
                    report
                        .errors
                        .push(format!("message {}: {error}", message.id));
                    failed.insert(index);
                }
                Ok(S3Notification::TestEvent { bucket }) => {
                    tracing::info!(message_id = %message.id, bucket = bucket.as_deref().unwrap_or(""), "s3:TestEvent acknowledged");
                    report.acknowledged += 1;
                }
                Ok(S3Notification::Records(records)) => {
                    for record in records {
                        match record {
                            NotificationRecord::Replication(event) => {
                                events.push((index, (**event).clone()));
                            }
                            NotificationRecord::UnknownReplication { event_name } => {
                                tracing::warn!(message_id = %message.id, event_name, "replication event type unknown to this version; acknowledged, not recorded");
                                report.acknowledged += 1;
                            }
                            NotificationRecord::Other { event_name } => {
                                tracing::info!(message_id = %message.id, event_name, "not a replication event; acknowledged");
                                report.acknowledged += 1;
                            }
                        }
                    }
                }
            }
        }
        report.replication_events = events.len();

        let now = self.clock.now();
        let expires_at = now + self.settings.ledger_ttl;
        let outcomes: Vec<_> = stream::iter(events.iter())
            .map(|(index, event)| async move {
                let key = IncidentKey::for_event(event);
                let outcome = self.ledger.record_event(event, &key, expires_at).await;
                (*index, event, key, outcome)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;

        let mut batches: BTreeMap<IncidentKey, IncidentBatch> = BTreeMap::new();
        for (index, event, key, outcome) in outcomes {
            match outcome {
                Ok(Recorded::New) => report.recorded += 1,
                Ok(Recorded::Duplicate) => report.duplicates += 1,
                Err(error) => {
                    tracing::error!(message_id = %messages[index].id, key = %event.key, %error, retryable = error.retryable(), "recording a replication event failed");
                    report
                        .errors
                        .push(format!("message {}: {error}", messages[index].id));
                    failed.insert(index);
                    continue;
                }
            }
            // Arrivals of late objects only update counts; they never page.
            if event.kind == ReplicationEventKind::OperationReplicatedAfterThreshold {
                continue;
            }
            let batch = batches.entry(key).or_insert_with(|| IncidentBatch {
                first: event.event_time,
                last: event.event_time,
                samples: BTreeSet::new(),
                messages: BTreeSet::new(),
            });
            batch.first = batch.first.min(event.event_time);
            batch.last = batch.last.max(event.event_time);
            batch.messages.insert(index);
            batch.samples.insert(SampleObject {
                key: event.key.clone(),
                version_id: event.version_id.clone(),
            });
            if batch.samples.len() > self.settings.sample_keys {
                batch.samples.pop_last();
            }
        }

        let settled: Vec<_> = stream::iter(batches.iter())
            .map(|(key, batch)| async move { (key, batch, self.settle(key, batch).await) })
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

        report.failed_messages = failed.into_iter().map(|i| messages[i].id.clone()).collect();
        report
    }

    /// Bring the incident's span up to date and send its page if one is due.
    async fn settle(
        &self,
        key: &IncidentKey,
        batch: &IncidentBatch,
    ) -> Result<Settled, SettleError> {
        self.ledger
            .widen_incident_span(key, batch.first, batch.last)
            .await?;
        let incident = self
            .ledger
            .incident(key)
            .await?
            .ok_or_else(|| SettleError::Missing(key.id()))?;
        let now = self.clock.now();
        let Some(due) = incident.page_due(now, self.settings.summary_window) else {
            return Ok(Settled::Quiet);
        };
        let claim = PageClaim {
            token: claim_token(now),
            at: now,
            expected_pages_sent: incident.pages_sent,
            lease: self.settings.page_lease,
        };
        if !self.ledger.claim_page(key, &claim).await? {
            // Someone paged since we read the incident, or is paging right now.
            return Ok(Settled::Quiet);
        }
        let samples: Vec<_> = batch.samples.iter().cloned().collect();
        let page = incident.page(due, &samples, self.settings.summary_window);
        if let Err(error) = self.notifier.publish(&page).await {
            if let Err(release_error) = self.ledger.release_page(key, &claim).await {
                tracing::warn!(%release_error, "could not release the page claim; it expires with its lease");
            }
            return Err(error.into());
        }
        let sent = PageSent {
            at: now,
            event_count: incident.event_count,
        };
        self.ledger.confirm_page(key, &claim, sent).await?;
        tracing::info!(
            incident = %key.id(),
            source_bucket = %key.source_bucket,
            page_type = ?due,
            subject = page.subject(),
            "page sent"
        );
        Ok(Settled::Paged {
            notice: key.cause == IncidentCause::NotTracked,
        })
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
