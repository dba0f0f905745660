//! The ledger port: what the monitor remembers about failed and late objects and their incidents.
//!
//! Every operation is idempotent and order-independent, because Lambda and S3 deliver at least once
//! and out of order. The object record is the membership: it lists the incidents it was counted in
//! ([`ObjectRecord::counted_in`]), so writing it decides whether an event is new, in one
//! conditional write, and a duplicate costs one failed conditional write. Records merge
//! commutatively ([`ObjectRecord::merge`]). Incidents keep their counts (events, recoveries, the
//! objects still missing) as counters, moved once per incident per batch by what the batch's
//! writes changed, in the same transaction as the writes ([`Commit`]), so no page ever
//! enumerates members and no failure can separate a record from its count. Pages are claimed
//! optimistically.

use crate::delivery::outbox::Claimed;
use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::{failure_reason_code, Incident, IncidentCause, IncidentKey};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::future::Future;

mod commit;
mod memberships;
pub use commit::{
    commit_token, Commit, CommitOutcome, IncidentMode, StoredIncident, Verdict, Write,
    MAX_COMMIT_WRITES,
};
pub use memberships::Memberships;

/// DynamoDB sort keys hold at most 1,024 bytes and S3 keys up to 1,024: long keys are replaced
/// by their SHA-256 in the sort key (the item keeps the real key in `key`).
const MAX_SORT_KEY_BYTES: usize = 1024;
/// Marks a sort key whose S3 key is its SHA-256.
const HASHED: &str = "sha256:";

/// An object version's place in its source bucket's records: destination, key, version. The
/// ledger keeps a source's records in this order, which is the order `replmon backlog` pages in.
pub fn object_sort_key(destination_bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let version = version_id.unwrap_or("null");
    let plain = format!("{destination_bucket}#{key}#{version}");
    // Destination and version cannot hold a `#` (checked at parse, `names`), so the key is
    // what lies between the first and the last one. A key that itself starts with `sha256:` is
    // hashed too, or it could be written to take the place of a long key's record.
    if plain.len() <= MAX_SORT_KEY_BYTES && !key.starts_with(HASHED) {
        plain
    } else {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{destination_bucket}#{HASHED}{hex}#{version}")
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
    /// Failed, then replicated by a re-drive (S3 Batch Replication) whose report did not list
    /// it as failed.
    Redriven,
}

impl ObjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectStatus::Late => "LATE",
            ObjectStatus::ReplicatedLate => "REPLICATED_LATE",
            ObjectStatus::Failed => "FAILED",
            ObjectStatus::Redriven => "REDRIVEN",
        }
    }
}

/// What an event adds to its incident's counts: an object that failed or was late or not
/// tracked, or a late object that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Event,
    Recovered,
}

/// The membership an event gives its object: the incident (cause and rule; source and
/// destination are the object's own) and whether it counts as an event or a recovery. Stored in
/// the object record, so a redelivered event finds it there and counts nothing.
pub fn membership(event: &ReplicationEvent) -> Option<(String, Counted)> {
    // Built for every event of a storm: concatenated, not formatted.
    let token = |parts: &[&str]| {
        let mut token = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|part| token.push_str(part));
        token
    };
    let rule = event.rule_id.as_str();
    match event.kind {
        ReplicationEventKind::OperationFailedReplication => Some((
            token(&[
                "FAILED:",
                failure_reason_code(event.failure_reason.as_deref()),
                "#",
                rule,
            ]),
            Counted::Event,
        )),
        ReplicationEventKind::OperationMissedThreshold => {
            Some((token(&["LATE#", rule]), Counted::Event))
        }
        ReplicationEventKind::OperationReplicatedAfterThreshold => {
            Some((token(&["RECOVERED#", rule]), Counted::Recovered))
        }
        ReplicationEventKind::OperationNotTracked => None,
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
    /// The memberships counted for this object ([`membership`]): a set, so the order and number
    /// of deliveries cannot change it. Bookkeeping, not part of what `replmon backlog` shows.
    #[serde(skip)]
    pub counted_in: Memberships,
    /// Re-drive bookkeeping (`crate::redrive`), for the few versions a re-drive took: boxed, so
    /// the record every failure event writes stays small.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<Box<RedriveMark>>,
}

/// What the latest re-drive that took an object version did with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedriveMark {
    /// The batch job.
    #[serde(rename = "redrive_job")]
    pub job: String,
    /// When it replicated the version (`None`: it did not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<DateTime<Utc>>,
    /// The task's failure code, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_failure: Option<String>,
}

/// The cause a missing object is counted under ([`IncidentCause`]), borrowed from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogOf<'a> {
    /// Failed, with this failure code.
    Failure(&'a str),
    Late,
}

impl BacklogOf<'_> {
    pub fn is(self, cause: &IncidentCause) -> bool {
        match (self, cause) {
            (BacklogOf::Failure(code), IncidentCause::Failure(theirs)) => code == theirs,
            (BacklogOf::Late, IncidentCause::Late) => true,
            _ => false,
        }
    }

    pub fn to_cause(self) -> IncidentCause {
        match self {
            BacklogOf::Failure(code) => IncidentCause::Failure(code.to_owned()),
            BacklogOf::Late => IncidentCause::Late,
        }
    }
}

/// What folding one event into an object record changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// Counted in its incident for the first time; `None` for a redelivery.
    pub counted: Option<Counted>,
    /// Whether the record changed at all (a redelivery changes nothing and is not written).
    pub changed: bool,
}

impl ObjectRecord {
    /// The record an event starts; `None` for events that do not concern a missing object.
    pub fn from_event(event: &ReplicationEvent) -> Option<Self> {
        Self::started_by(event, membership(event).map(|(token, _)| token))
    }

    fn started_by(event: &ReplicationEvent, token: Option<String>) -> Option<Self> {
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
            counted_in: Memberships::default(),
            redrive: None,
        };
        record.merge_with(event, token);
        Some(record)
    }

    /// Fold an event into a stored record (`None`: none stored) and say what changed.
    pub fn apply(
        stored: Option<&ObjectRecord>,
        event: &ReplicationEvent,
    ) -> Option<(Self, Effect)> {
        // The membership token is built once per event: this runs for every record of a storm.
        let (token, counted) = membership(event).unzip();
        let counted = counted.filter(|_| {
            !stored.is_some_and(|b| token.as_ref().is_some_and(|t| b.counted_in.contains(t)))
        });
        let record = match stored {
            Some(stored) => {
                let mut record = stored.clone();
                record.merge_with(event, token);
                record
            }
            None => Self::started_by(event, token)?,
        };
        let effect = Effect {
            counted,
            changed: stored != Some(&record),
        };
        Some((record, effect))
    }

    /// Fold an event in. Commutative and idempotent: the result does not depend on the order or
    /// the number of times events are merged.
    pub fn merge(&mut self, event: &ReplicationEvent) {
        self.merge_with(event, membership(event).map(|(token, _)| token));
    }

    /// [`Self::merge`] with the event's membership token already built.
    fn merge_with(&mut self, event: &ReplicationEvent, token: Option<String>) {
        let at = event.event_time;
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        self.size = self.size.or(event.size);
        if let Some(token) = token {
            self.counted_in.insert(token);
        }
        match event.kind {
            ReplicationEventKind::OperationFailedReplication => {
                // The earliest failure explains the object; ties broken by the code for determinism.
                let candidate = (at, event.failure_reason.as_deref());
                if self
                    .failed_at
                    .is_none_or(|t| candidate < (t, self.failure_reason.as_deref()))
                {
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

    /// The memberships a record written before `counted_in` existed stands for, read from its
    /// timestamps. (Exact for all but objects that failed for two reasons; `replmon migrate`
    /// writes the exact set from the old membership items.)
    pub fn derive_counted_in(&mut self) {
        let rule = &self.rule_id;
        if self.failed_at.is_some() {
            self.counted_in.insert(format!(
                "FAILED:{}#{rule}",
                failure_reason_code(self.failure_reason.as_deref())
            ));
        }
        if self.late_at.is_some() {
            self.counted_in.insert(format!("LATE#{rule}"));
        }
        if self.replicated_late_at.is_some() {
            self.counted_in.insert(format!("RECOVERED#{rule}"));
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

    /// The re-drive job that last took this version.
    pub fn redrive_job(&self) -> Option<&str> {
        self.redrive.as_ref().map(|r| r.job.as_str())
    }

    /// When a re-drive replicated it.
    pub fn redriven_at(&self) -> Option<DateTime<Utc>> {
        self.redrive.as_ref().and_then(|r| r.redriven_at)
    }

    /// The failure code of the re-drive task that failed for it.
    pub fn redrive_failure(&self) -> Option<&str> {
        self.redrive
            .as_ref()
            .and_then(|r| r.redrive_failure.as_deref())
    }

    pub fn status(&self) -> ObjectStatus {
        if self.redriven_at().is_some() {
            ObjectStatus::Redriven
        } else if self.failed_at.is_some() {
            ObjectStatus::Failed
        } else if self.replicated_late_at.is_some() {
            ObjectStatus::ReplicatedLate
        } else {
            ObjectStatus::Late
        }
    }

    /// The incident the object's absence from the replica is counted under: its failure's, or
    /// the late incident's while it has not arrived; `None` once it arrived.
    pub fn backlog_cause(&self) -> Option<IncidentCause> {
        self.backlog_of().map(BacklogOf::to_cause)
    }

    /// [`Self::backlog_cause`], borrowed from the record (asked for every record written).
    pub fn backlog_of(&self) -> Option<BacklogOf<'_>> {
        match self.status() {
            ObjectStatus::Failed => Some(BacklogOf::Failure(failure_reason_code(
                self.failure_reason.as_deref(),
            ))),
            ObjectStatus::Late => Some(BacklogOf::Late),
            ObjectStatus::ReplicatedLate | ObjectStatus::Redriven => None,
        }
    }

    /// The incident of this object with another cause.
    pub fn incident(&self, cause: IncidentCause) -> IncidentKey {
        IncidentKey {
            source_bucket: self.source_bucket.clone(),
            rule_id: self.rule_id.clone(),
            destination_bucket: self.destination_bucket.clone(),
            cause,
        }
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// What one batch moves in one incident's counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentDelta {
    pub events: u64,
    pub recovered: u64,
    /// Objects now missing under this incident, minus those no longer.
    pub backlog: i64,
    /// Event times of the batch's events of this incident (`None`: only backlog moved here).
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
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
    /// The incident was written by a release before the one-write ledger and has no counters
    /// yet: nothing is counted into it until `replmon migrate` has converted it, and its
    /// messages come back until then (a retry helps once the migration ran).
    #[error("incident {incident} is in an earlier release's layout: run `replmon migrate` on the table (its events are retried until then)")]
    NotMigrated { incident: String },
}

impl LedgerError {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LedgerError::Unavailable { .. } | LedgerError::NotMigrated { .. }
        )
    }
}

/// The ledger of failed and late objects and the incidents they belong to.
///
/// One commit per batch (per chunk of it) writes the batch's object records together with the
/// counts they move ([`Commit`]); pages are claimed, confirmed and released on the incident.
pub trait Ledger: Send + Sync {
    /// Apply the writes atomically, or none of them and say why ([`CommitOutcome`]). Sent again
    /// with the same token, a commit that went through is answered as done, not applied twice.
    fn commit(
        &self,
        commit: &Commit,
    ) -> impl Future<Output = Result<CommitOutcome, LedgerError>> + Send;

    /// The incident as stored now (strongly consistent), with its counts.
    fn incident(
        &self,
        incident: &IncidentKey,
    ) -> impl Future<Output = Result<Option<Incident>, LedgerError>> + Send;

    /// Take the right to page and answer the incident as it stands. Refused, the answer says
    /// why with the incident as it stands (in the same request): someone paged since (or it is
    /// gone), or someone holds a live claim.
    fn claim_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> impl Future<Output = Result<Claimed<Incident, Incident>, LedgerError>> + Send;

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
    fn commit(
        &self,
        commit: &Commit,
    ) -> impl Future<Output = Result<CommitOutcome, LedgerError>> + Send {
        (**self).commit(commit)
    }
    fn incident(
        &self,
        incident: &IncidentKey,
    ) -> impl Future<Output = Result<Option<Incident>, LedgerError>> + Send {
        (**self).incident(incident)
    }
    fn claim_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> impl Future<Output = Result<Claimed<Incident, Incident>, LedgerError>> + Send {
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
mod tests;
