//! The replication-events handler: S3 replication notifications in, ledger records and pages out.
//!
//! Generic over the ledger, notifier and clock ports, so the same code runs against DynamoDB and
//! SNS in Lambda and against in-memory fakes in unit tests and the benchmark.

use crate::clock::Clock;
use crate::delivery::outbox::{self, deliver, Claimed, Outbox};
use crate::envelope::{self, Delivery, EnvelopeError};
use crate::event::{NotificationRecord, ReplicationEvent, ReplicationEventKind, S3Notification};
use crate::incident::{Incident, IncidentCause, IncidentKey};
use crate::ledger::{Ledger, LedgerError};
use batch::{BatchPlan, IncidentBatch};
pub use message::{messages, Message};
use pages::{claim_token, IncidentClaim, IncidentPages};
use write::{IncidentAfter, Known, KnownIncidents, WriteContext};

mod batch;
mod known;
mod message;
mod pages;
mod plan;
mod write;
use crate::delivery::page::{Notifier, NotifyError};
use crate::delivery::text::Untrusted;
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeSet;

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
    /// How many times (50 ms, doubling) to wait for another invocation's live page claim to be
    /// confirmed before sending the messages back for retry.
    pub claim_waits: u32,
}

/// Fresh looks at an incident whose pages moved on while we decided, before giving up.
const MAX_LOOKS: u32 = 4;

/// The first wait for another invocation's page claim.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            summary_window: Duration::minutes(15),
            sample_keys: 10,
            ledger_ttl: Duration::days(90),
            page_lease: Duration::seconds(60),
            concurrency: 16,
            claim_waits: 4,
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
    known: KnownIncidents,
}

enum Settled {
    Quiet,
    Paged { notice: bool },
}

/// Settling an incident: nothing to do, decide from the incident as the commits left it, or
/// read it first.
enum FirstLook<'a> {
    Quiet,
    Decide(&'a Incident),
    Read,
}

impl<L: Ledger, N: Notifier, C: Clock> ReplicationMonitor<L, N, C> {
    pub fn new(ledger: L, notifier: N, clock: C, settings: MonitorSettings) -> Self {
        ReplicationMonitor {
            ledger,
            notifier,
            clock,
            settings,
            known: KnownIncidents::default(),
        }
    }

    /// The Lambda entry point: any supported payload (as JSON text) in, the response Lambda
    /// expects out.
    pub async fn handle(&self, payload: &str) -> Result<Value, HandlerError> {
        let (delivery, messages) = messages(payload).inspect_err(|e| {
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
            Delivery::Sqs => Ok(envelope::sqs_batch_response(report.failed_messages)),
            _ if report.failed_messages.is_empty() => {
                Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
            }
            _ => Err(HandlerError::Incomplete {
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
        // Boxed as parsed: moving a record's event out of its box copies and frees it.
        let mut events: Vec<(usize, Box<ReplicationEvent>)> = Vec::new();

        let mut ids = Vec::with_capacity(messages.len());
        let mut first_delivery = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            ids.push(message.id);
            first_delivery.push(message.first_delivery);
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
                                events.push((index, event));
                            }
                            NotificationRecord::UnknownReplication { event_name } => {
                                tracing::warn!(%message_id, event_name = %Untrusted(&event_name), "replication event type unknown to this version; acknowledged, not recorded");
                                report.acknowledged += 1;
                            }
                            NotificationRecord::Other { event_name } => {
                                tracing::info!(%message_id, event_name = %Untrusted(&event_name), "not a replication event; acknowledged");
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
        let pairs: Vec<(&ReplicationEvent, &IncidentKey)> = events
            .iter()
            .zip(&event_groups)
            .map(|((_, event), &group)| (&**event, &keys[group]))
            .collect();
        let context = WriteContext {
            now,
            expires_at: now + self.settings.ledger_ttl,
            page_lease: self.settings.page_lease,
            claim_token: &|| claim_token(now),
            known: &self.known,
        };
        let written = write::write_events(&self.ledger, &pairs, &context).await;
        for (key, after) in &written.incidents {
            match &after.known {
                Known::Stored(incident) => self.known.learn(key, Some(incident)),
                Known::Absent => self.known.learn(key, None),
                Known::Remembered(_) | Known::Unknown => {}
            }
        }

        let mut plan = BatchPlan::default();
        for (((index, event), &group), outcome) in
            events.iter().zip(&event_groups).zip(&written.events)
        {
            match outcome {
                Ok(effect) => {
                    if effect.counted.is_some() {
                        report.recorded += 1;
                    } else {
                        report.duplicates += 1;
                    }
                    plan.add(
                        *index,
                        first_delivery[*index],
                        event,
                        &keys[group],
                        self.settings.sample_keys,
                    );
                }
                Err(error) => {
                    tracing::error!(message_id = %ids[*index], key = %Untrusted(&event.key), %error, retryable = error.retryable(), "recording a replication event failed");
                    report
                        .errors
                        .push(format!("message {}: {error}", ids[*index]));
                    failed.insert(*index);
                }
            }
        }

        let incidents = &written.incidents;
        // Only incidents that may need a request go through the stream of futures.
        let settled: Vec<_> = stream::iter(plan.incidents.iter().filter(|(key, batch)| {
            !matches!(
                self.first_look(batch, incidents.get(*key), now),
                FirstLook::Quiet
            )
        }))
        .map(|(key, batch)| async move {
            (
                key,
                batch,
                self.settle(key, batch, incidents.get(*key), now).await,
            )
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
                    tracing::error!(incident = %Untrusted(&key.id()), source_bucket = %Untrusted(&key.source_bucket), %error, "settling an incident failed; its messages will be retried");
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

    /// What settling an incident needs, as far as this batch's commits tell without a request:
    /// most incidents of a storm's batch have had their page and are quiet at once.
    fn first_look<'a>(
        &self,
        batch: &IncidentBatch<'_>,
        after: Option<&'a IncidentAfter>,
        now: DateTime<Utc>,
    ) -> FirstLook<'a> {
        if batch.paging_events == 0 {
            return FirstLook::Quiet;
        }
        let Some(after) = after else {
            return if batch.redelivered {
                FirstLook::Read
            } else {
                FirstLook::Quiet
            };
        };
        // Nothing new counted: an earlier attempt at these messages may still owe the page (a
        // failed publish), so a redelivery looks. A first delivery of a duplicate needs no look:
        // the message that recorded the events first owns their page.
        if !after.moved && !batch.redelivered {
            return FirstLook::Quiet;
        }
        let window = self.settings.summary_window;
        match &after.known {
            // The commit that opened the incident took its first page's claim.
            Known::Stored(incident) if after.claim.is_some() => FirstLook::Decide(incident),
            Known::Stored(incident) if !incident.may_be_due(now, window) => FirstLook::Quiet,
            Known::Stored(incident) => FirstLook::Decide(incident),
            Known::Absent => FirstLook::Quiet,
            // A page within the window stands whatever others counted since (pages only move
            // forward), and a picture that says a page may be due is checked by the claim. What
            // else memory says may hide events counted elsewhere, and with them a summary owed.
            Known::Remembered(incident)
                if incident.pages_sent > 0
                    && incident
                        .last_page_at
                        .is_some_and(|last| now - last < window) =>
            {
                FirstLook::Quiet
            }
            Known::Remembered(incident) if incident.may_be_due(now, window) => {
                FirstLook::Decide(incident)
            }
            Known::Remembered(_) | Known::Unknown => FirstLook::Read,
        }
    }

    /// Send the incident's page if one is due, through the outbox (claim, publish, confirm).
    async fn settle(
        &self,
        key: &IncidentKey,
        batch: &IncidentBatch<'_>,
        after: Option<&IncidentAfter>,
        now: DateTime<Utc>,
    ) -> Result<Settled, SettleError> {
        let first_claim = after.and_then(|after| after.claim.as_ref());
        let outbox = IncidentPages {
            ledger: &self.ledger,
            now,
            lease: self.settings.page_lease,
        };
        // Borrowed until a claim needs it.
        let mut incident: Cow<'_, Incident> = match self.first_look(batch, after, now) {
            FirstLook::Quiet => return Ok(Settled::Quiet),
            FirstLook::Decide(incident) => Cow::Borrowed(incident),
            FirstLook::Read => match self.ledger.incident(key).await? {
                Some(incident) => {
                    self.known.learn(key, Some(&incident));
                    Cow::Owned(incident)
                }
                None => return Ok(Settled::Quiet),
            },
        };
        let claimed = match first_claim {
            // The commit that opened the incident took its first page's claim.
            Some(claim) => IncidentClaim {
                claim: claim.clone(),
                incident: incident.into_owned(),
            },
            None => {
                let (mut waited, mut looks) = (0, 0);
                loop {
                    if !incident.may_be_due(now, self.settings.summary_window) {
                        return Ok(Settled::Quiet);
                    }
                    match outbox.claim(&incident).await? {
                        Claimed::Taken(claimed) => break claimed,
                        Claimed::Changed(None) => {
                            self.known.learn(key, None);
                            return Ok(Settled::Quiet);
                        }
                        // Someone paged since we read the incident (or what we read was
                        // stale): decide again from the incident as it stands, since a summary
                        // may still be due. Pages go out at most once per window, so this
                        // repeats once or twice.
                        Claimed::Changed(Some(current)) => {
                            looks += 1;
                            if looks > MAX_LOOKS {
                                return Err(SettleError::ClaimHeld);
                            }
                            incident = Cow::Owned(current);
                        }
                        // Someone holds a live claim and is paging right now: give it a moment
                        // to confirm (a publish takes milliseconds). If it died, acknowledging
                        // here would lose the page, so after the wait the messages go back for
                        // retry and find the outcome (or an expired lease) next time.
                        Claimed::Held(current) => {
                            if waited >= self.settings.claim_waits {
                                return Err(SettleError::ClaimHeld);
                            }
                            tokio::time::sleep(CLAIM_WAIT * 2u32.pow(waited)).await;
                            waited += 1;
                            incident = Cow::Owned(current);
                        }
                    }
                    self.known.learn(key, Some(&incident));
                }
            }
        };
        let incident = &claimed.incident;
        self.known.learn(key, Some(incident));
        let Some(due) = incident.page_due(now, self.settings.summary_window) else {
            // Nothing new was counted since the last page.
            outbox::release(&outbox, &claimed, &key.id()).await;
            return Ok(Settled::Quiet);
        };
        let samples = batch.sample_objects();
        let page = incident.page(due, &samples, self.settings.summary_window);
        let delivered = deliver(
            &outbox,
            &self.notifier,
            &claimed,
            std::slice::from_ref(&page),
            &key.id(),
        )
        .await;
        if let Some(error) = delivered.error {
            return Err(error.into());
        }
        // The page is out (its confirmation, if it failed, was logged by the outbox).
        let mut paged = incident.clone();
        paged.pages_sent += 1;
        paged.first_page_at.get_or_insert(now);
        paged.last_page_at = Some(now);
        paged.event_count_at_last_page = incident.event_count;
        self.known.learn(key, Some(&paged));
        tracing::info!(
            incident = %Untrusted(&key.id()),
            source_bucket = %Untrusted(&key.source_bucket),
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
}

#[cfg(test)]
mod tests;
