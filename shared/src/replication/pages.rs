//! An incident's pages through the outbox: claimed on the incident item (on condition that no
//! page went out since it was read and no live claim is held), counted there once sent.

use crate::delivery::outbox::{Claimed, Outbox};
use crate::incident::Incident;
use crate::ledger::{Ledger, LedgerError, PageClaim, PageSent};
use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicU64, Ordering};

/// The pages of the replication ledger's incidents, as one invocation sends them.
pub(super) struct IncidentPages<'a, L> {
    pub ledger: &'a L,
    pub now: DateTime<Utc>,
    pub lease: Duration,
}

/// A page claim and the incident as it stood when claimed (the page reports those counts).
#[derive(Debug, Clone)]
pub(super) struct IncidentClaim {
    pub claim: PageClaim,
    pub incident: Incident,
}

impl<L: Ledger> Outbox for IncidentPages<'_, L> {
    type Owed = Incident;
    type Claim = IncidentClaim;

    async fn claim(
        &self,
        owed: &Incident,
    ) -> Result<Claimed<IncidentClaim, Incident>, LedgerError> {
        let claim = PageClaim {
            token: claim_token(self.now),
            at: self.now,
            expected_pages_sent: owed.pages_sent,
            lease: self.lease,
        };
        Ok(match self.ledger.claim_page(&owed.key, &claim).await? {
            Claimed::Taken(incident) => Claimed::Taken(IncidentClaim { claim, incident }),
            Claimed::Changed(current) => Claimed::Changed(current),
            Claimed::Held(current) => Claimed::Held(current),
        })
    }

    async fn confirm(&self, claimed: &IncidentClaim, _sent: usize) -> Result<(), LedgerError> {
        let sent = PageSent {
            at: self.now,
            event_count: claimed.incident.event_count,
        };
        self.ledger
            .confirm_page(&claimed.incident.key, &claimed.claim, sent)
            .await
    }

    async fn release(&self, claimed: &IncidentClaim) -> Result<(), LedgerError> {
        self.ledger
            .release_page(&claimed.incident.key, &claimed.claim)
            .await
    }
}

/// Unique per claim: time, process and a counter (no randomness needed).
pub(super) fn claim_token(now: DateTime<Utc>) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        now.timestamp_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
