//! An alarm record's pending notification through the outbox: claimed by writing the record
//! with the claim's time (on condition of its revision), confirmed by clearing it, released by
//! dropping the claim's time so that a retry sends it at once.

use super::monitor::AlarmStore;
use super::AlarmRecord;
use crate::delivery::outbox::{Claimed, Outbox};
use crate::delivery::text::Untrusted;
use crate::ledger::LedgerError;
use chrono::{DateTime, Utc};

/// The pending notifications of alarm records, as one invocation sends them.
pub(super) struct PendingNotifications<'a, S> {
    pub store: &'a S,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A record as read (or as decided) with the revision it was read at (`None`: not stored).
pub(super) struct Revisioned {
    pub record: AlarmRecord,
    pub revision: Option<u64>,
}

/// The record as the claim wrote it, at the revision the claim made.
pub(super) struct AlarmClaim {
    pub record: AlarmRecord,
    pub revision: u64,
}

impl<S: AlarmStore> Outbox for PendingNotifications<'_, S> {
    type Owed = Revisioned;
    type Claim = AlarmClaim;

    /// The write that claims also stores the state the notification is about (a decided change
    /// is claimed in the same write that records it).
    async fn claim(
        &self,
        owed: &Revisioned,
    ) -> Result<Claimed<AlarmClaim, Revisioned>, LedgerError> {
        let mut record = owed.record.clone();
        record.pending_since = Some(self.now);
        if !self
            .store
            .put_alarm(&record, owed.revision, self.expires_at)
            .await?
        {
            // Someone wrote the record since it was read: the caller reads it again.
            return Ok(Claimed::Changed(None));
        }
        Ok(Claimed::Taken(AlarmClaim {
            record,
            revision: owed.revision.map_or(1, |r| r + 1),
        }))
    }

    async fn confirm(&self, claim: &AlarmClaim, _sent: usize) -> Result<(), LedgerError> {
        let mut record = claim.record.clone();
        record.pending = None;
        record.pending_since = None;
        self.write(&record, claim.revision, "confirm").await
    }

    async fn release(&self, claim: &AlarmClaim) -> Result<(), LedgerError> {
        let mut record = claim.record.clone();
        record.pending_since = None;
        self.write(&record, claim.revision, "release").await
    }
}

impl<S: AlarmStore> PendingNotifications<'_, S> {
    /// A write after the claim: the claim's revision is still stored unless a newer change was
    /// recorded meanwhile (which decided its own notification).
    async fn write(
        &self,
        record: &AlarmRecord,
        revision: u64,
        what: &'static str,
    ) -> Result<(), LedgerError> {
        if !self
            .store
            .put_alarm(record, Some(revision), self.expires_at)
            .await?
        {
            tracing::info!(alarm = %Untrusted(&record.alarm_name), what, "alarm record changed since the claim; the newer change decides what is pending");
        }
        Ok(())
    }
}
