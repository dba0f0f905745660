//! An alarm record's pending notification through the outbox: claimed by writing the record
//! with the claim's time (on condition of its revision), confirmed by clearing it, released by
//! dropping the claim's time so that a retry sends it at once.

use super::monitor::AlarmStore;
use super::AlarmRecord;
use crate::delivery::outbox::{AtRevision, Claimed, Outbox, Written};
use crate::delivery::text::Untrusted;
use crate::ledger::LedgerError;
use chrono::{DateTime, Utc};

/// The pending notifications of alarm records, as one invocation sends them.
pub(super) struct PendingNotifications<'a, S> {
    pub store: &'a S,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl<S: AlarmStore> Outbox for PendingNotifications<'_, S> {
    type Owed = AtRevision<AlarmRecord>;
    type Claim = Written<AlarmRecord>;

    /// The write that claims also stores the state the notification is about (a decided change
    /// is claimed in the same write that records it).
    async fn claim(
        &self,
        owed: &AtRevision<AlarmRecord>,
    ) -> Result<Claimed<Written<AlarmRecord>, AtRevision<AlarmRecord>>, LedgerError> {
        let mut record = owed.item.clone();
        record.pending_since = Some(self.now);
        if !self
            .store
            .put_alarm(&record, owed.revision, self.expires_at)
            .await?
        {
            // Someone wrote the record since it was read: the caller reads it again.
            return Ok(Claimed::Changed(None));
        }
        Ok(Claimed::Taken(owed.written(record)))
    }

    async fn confirm(&self, claim: &Written<AlarmRecord>, _sent: usize) -> Result<(), LedgerError> {
        let mut record = claim.item.clone();
        record.pending = None;
        record.pending_since = None;
        self.write(&record, claim.revision, "confirm").await
    }

    async fn release(&self, claim: &Written<AlarmRecord>) -> Result<(), LedgerError> {
        let mut record = claim.item.clone();
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
