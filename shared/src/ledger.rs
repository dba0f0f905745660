//! The ledger port: what the monitor remembers about failed and late objects and their incidents.
//!
//! Every operation is idempotent and order-independent, because Lambda and S3 deliver at least once
//! and out of order: object records merge commutatively ([`ObjectRecord::merge`]), event markers
//! (incident memberships) make counting exactly-once, incident spans only widen, and pages are
//! claimed optimistically.

use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::{Incident, IncidentKey};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::future::Future;

/// DynamoDB sort keys hold at most 1,024 bytes and S3 keys up to 1,024: long keys are replaced
/// by their SHA-256 in the sort key (the item keeps the real key in `key`).
const MAX_SORT_KEY_BYTES: usize = 1024;

/// An object version's place in its source bucket's records: destination, key, version. The
/// ledger keeps a source's records in this order, which is the order `replmon backlog` pages in.
pub fn object_sort_key(destination_bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let version = version_id.unwrap_or("null");
    let plain = format!("{destination_bucket}#{key}#{version}");
    if plain.len() <= MAX_SORT_KEY_BYTES {
        plain
    } else {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{destination_bucket}#sha256:{hex}#{version}")
    }
}

/// Where an object version stands with one destination. Ordered by precedence: a later event
/// never moves an object to a lower status, whatever order events arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ObjectStatus {
    /// Missed the replication time threshold; not on the replica yet.
    Late,
    /// Missed the threshold, then arrived.
    ReplicatedLate,
    /// Will never be replicated by S3 on its own.
    Failed,
}

impl ObjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectStatus::Late => "LATE",
            ObjectStatus::ReplicatedLate => "REPLICATED_LATE",
            ObjectStatus::Failed => "FAILED",
        }
    }
}

/// One failed or late object version for one destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectRecord {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub rule_id: String,
    pub size: Option<u64>,
    pub failure_reason: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub late_at: Option<DateTime<Utc>>,
    pub replicated_late_at: Option<DateTime<Utc>>,
    pub threshold_seconds: Option<f64>,
    pub replication_time_seconds: Option<f64>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl ObjectRecord {
    /// The record an event starts; `None` for events that do not concern a missing object.
    pub fn from_event(event: &ReplicationEvent) -> Option<Self> {
        if event.kind == ReplicationEventKind::OperationNotTracked {
            return None;
        }
        let mut record = ObjectRecord {
            source_bucket: event.source_bucket.clone(),
            destination_bucket: event.destination_bucket.clone(),
            key: event.key.clone(),
            version_id: event.version_id.clone(),
            rule_id: event.rule_id.clone(),
            size: event.size,
            failure_reason: None,
            failed_at: None,
            late_at: None,
            replicated_late_at: None,
            threshold_seconds: None,
            replication_time_seconds: None,
            first_seen: event.event_time,
            last_seen: event.event_time,
        };
        record.merge(event);
        Some(record)
    }

    /// Fold an event in. Commutative and idempotent: the result does not depend on the order or
    /// the number of times events are merged.
    pub fn merge(&mut self, event: &ReplicationEvent) {
        let at = event.event_time;
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        self.size = self.size.or(event.size);
        match event.kind {
            ReplicationEventKind::OperationFailedReplication => {
                // The earliest failure explains the object; ties broken by the code for determinism.
                let candidate = (at, event.failure_reason.clone());
                let current = self.failed_at.map(|t| (t, self.failure_reason.clone()));
                if current.as_ref().is_none_or(|c| candidate < *c) {
                    self.failed_at = Some(at);
                    self.failure_reason = event.failure_reason.clone();
                }
            }
            ReplicationEventKind::OperationMissedThreshold => {
                self.late_at = Some(self.late_at.map_or(at, |t| t.min(at)));
                self.threshold_seconds = max_opt(self.threshold_seconds, event.threshold_seconds);
            }
            ReplicationEventKind::OperationReplicatedAfterThreshold => {
                self.replicated_late_at = Some(self.replicated_late_at.map_or(at, |t| t.min(at)));
                self.threshold_seconds = max_opt(self.threshold_seconds, event.threshold_seconds);
                self.replication_time_seconds = max_opt(
                    self.replication_time_seconds,
                    event.replication_time_seconds,
                );
            }
            ReplicationEventKind::OperationNotTracked => {}
        }
    }

    /// Derived, so it cannot disagree with the timestamps whatever the arrival order.
    pub fn sort_key(&self) -> String {
        object_sort_key(
            &self.destination_bucket,
            &self.key,
            self.version_id.as_deref(),
        )
    }

    pub fn status(&self) -> ObjectStatus {
        if self.failed_at.is_some() {
            ObjectStatus::Failed
        } else if self.replicated_late_at.is_some() {
            ObjectStatus::ReplicatedLate
        } else {
            ObjectStatus::Late
        }
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// Whether an event was new to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// Already recorded by an earlier delivery: nothing changed.
    Duplicate,
}

/// A claim on the right to send an incident's next page, so that concurrent invocations in a
/// storm send it once. It expires after a lease in case its holder dies before publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageClaim {
    pub token: String,
    pub at: DateTime<Utc>,
    /// The claim holds only if nobody paged since the incident was read.
    pub expected_pages_sent: u64,
    pub lease: Duration,
}

impl PageClaim {
    /// A foreign claim taken before this instant has expired.
    pub fn lease_cutoff(&self) -> DateTime<Utc> {
        self.at - self.lease
    }
}

/// What a confirmed page covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSent {
    pub at: DateTime<Utc>,
    /// The incident's event count the page reported.
    pub event_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Throttling, timeouts, 5xx, conflicts that outlasted our retries: a later retry can help.
    #[error("ledger {operation} failed and may succeed on retry: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
    },
    /// Missing table, access denied, validation: a retry will not help until someone fixes it.
    #[error("ledger {operation} was refused: {detail}")]
    Refused {
        operation: &'static str,
        detail: String,
    },
    /// The table does not exist: wrong name or region, or the stack is not deployed.
    #[error(
        "ledger {operation} failed: the table does not exist in this account and region ({detail})"
    )]
    MissingTable {
        operation: &'static str,
        detail: String,
    },
    /// An item that does not have the layout this version writes.
    #[error("ledger item {item} is unreadable: {detail}")]
    Corrupt { item: String, detail: String },
}

impl LedgerError {
    pub fn retryable(&self) -> bool {
        matches!(self, LedgerError::Unavailable { .. })
    }
}

/// How many distinct events an incident holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Failed, late or not-tracked objects.
    pub events: u64,
    /// Late objects that arrived since.
    pub recovered: u64,
}

/// The ledger of failed and late objects and the incidents they belong to.
///
/// No call needs a transaction: the object record merges commutatively, then a conditional put
/// of the event's membership in its incident decides whether it is new. Counts are derived from
/// the memberships, so no counter can drift when a retry follows a crash between two writes.
pub trait Ledger: Send + Sync {
    /// Merge the event into its object record, then add it to its incident. A duplicate delivery
    /// changes nothing and answers [`Recorded::Duplicate`].
    fn record_event(
        &self,
        event: &ReplicationEvent,
        incident: &IncidentKey,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Recorded, LedgerError>> + Send;

    /// Create the incident if needed, widen its first/last seen to include `[first, last]` (never
    /// narrows), note that events were recorded for it at `now`, and answer it as it now stands
    /// (without its counts).
    fn touch_incident(
        &self,
        incident: &IncidentKey,
        span: (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Incident, LedgerError>> + Send;

    /// The incident as stored now (strongly consistent), without its counts.
    fn incident(
        &self,
        incident: &IncidentKey,
    ) -> impl Future<Output = Result<Option<Incident>, LedgerError>> + Send;

    /// Count the incident's distinct events (read only when a page may be due).
    fn count_events(
        &self,
        incident: &IncidentKey,
    ) -> impl Future<Output = Result<EventCounts, LedgerError>> + Send;

    /// Take the right to page: `Ok(false)` when someone paged since, or holds a live claim.
    fn claim_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Record that the claimed page went out, and drop the claim.
    fn confirm_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
        sent: PageSent,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Give the claim back after a failed publish (or when nothing was worth paging).
    fn release_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// Lets a handler borrow a port it does not own.
impl<T: Ledger> Ledger for &T {
    fn record_event(
        &self,
        event: &ReplicationEvent,
        incident: &IncidentKey,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Recorded, LedgerError>> + Send {
        (**self).record_event(event, incident, expires_at)
    }
    fn touch_incident(
        &self,
        incident: &IncidentKey,
        span: (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Incident, LedgerError>> + Send {
        (**self).touch_incident(incident, span, now, expires_at)
    }
    fn incident(
        &self,
        incident: &IncidentKey,
    ) -> impl Future<Output = Result<Option<Incident>, LedgerError>> + Send {
        (**self).incident(incident)
    }
    fn count_events(
        &self,
        incident: &IncidentKey,
    ) -> impl Future<Output = Result<EventCounts, LedgerError>> + Send {
        (**self).count_events(incident)
    }
    fn claim_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).claim_page(incident, claim)
    }
    fn confirm_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
        sent: PageSent,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).confirm_page(incident, claim, sent)
    }
    fn release_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).release_page(incident, claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: ReplicationEventKind, second: u32, reason: Option<&str>) -> ReplicationEvent {
        ReplicationEvent {
            kind,
            region: None,
            event_time: DateTime::parse_from_rfc3339(&format!("2026-11-23T03:00:{second:02}Z"))
                .unwrap()
                .with_timezone(&Utc),
            source_bucket: "src".into(),
            key: "k".into(),
            version_id: Some("v".into()),
            size: Some(1),
            sequencer: None,
            rule_id: "r".into(),
            destination_bucket: "dst".into(),
            destination_arn: "arn:aws:s3:::dst".into(),
            s3_operation: None,
            request_time: None,
            failure_reason: reason.map(str::to_owned),
            threshold_seconds: Some(900.0),
            replication_time_seconds: Some(1000.0),
        }
    }

    fn fold(events: &[ReplicationEvent]) -> ObjectRecord {
        let mut record = ObjectRecord::from_event(&events[0]).unwrap();
        for e in &events[1..] {
            record.merge(e);
        }
        record
    }

    #[test]
    fn merge_is_order_independent_and_idempotent() {
        use ReplicationEventKind::*;
        let events = [
            event(OperationMissedThreshold, 10, None),
            event(OperationReplicatedAfterThreshold, 30, None),
            event(OperationFailedReplication, 20, Some("B")),
            event(OperationFailedReplication, 5, Some("A")),
        ];
        let reference = fold(&events);
        assert_eq!(reference.status(), ObjectStatus::Failed);
        assert_eq!(reference.failure_reason.as_deref(), Some("A"));
        assert_eq!(
            reference.first_seen.to_rfc3339(),
            "2026-11-23T03:00:05+00:00"
        );
        assert_eq!(
            reference.last_seen.to_rfc3339(),
            "2026-11-23T03:00:30+00:00"
        );
        // Every permutation, and every event twice, gives the same record.
        let mut order = [0usize, 1, 2, 3];
        for _ in 0..24 {
            let permuted: Vec<_> = order
                .iter()
                .flat_map(|&i| [events[i].clone(), events[i].clone()])
                .collect();
            assert_eq!(fold(&permuted), reference);
            next_permutation(&mut order);
        }
    }

    #[test]
    fn late_then_replicated_in_either_order() {
        use ReplicationEventKind::*;
        let late = event(OperationMissedThreshold, 10, None);
        let done = event(OperationReplicatedAfterThreshold, 30, None);
        assert_eq!(
            fold(std::slice::from_ref(&late)).status(),
            ObjectStatus::Late
        );
        assert_eq!(
            fold(&[late.clone(), done.clone()]).status(),
            ObjectStatus::ReplicatedLate
        );
        assert_eq!(fold(&[done, late]).status(), ObjectStatus::ReplicatedLate);
        assert!(ObjectRecord::from_event(&event(OperationNotTracked, 1, None)).is_none());
    }

    fn next_permutation(v: &mut [usize]) {
        let n = v.len();
        let Some(i) = (0..n - 1).rev().find(|&i| v[i] < v[i + 1]) else {
            v.reverse();
            return;
        };
        let j = (i + 1..n).rev().find(|&j| v[j] > v[i]).unwrap();
        v.swap(i, j);
        v[i + 1..].reverse();
    }
}
