//! What the canary owes on-call, through the outbox: a rule health's owed pages (claimed by
//! writing the health with the claim's time, on condition of its revision) and audit notices
//! (claimed once per audit period).

use super::ports::CanaryStore;
use super::probe::RuleHealth;
use crate::delivery::outbox::{AtRevision, Claimed, Outbox, Written};
use crate::ledger::LedgerError;
use chrono::{DateTime, Duration, Utc};

/// How long a run's claim on a health's owed pages keeps other runs from sending them (a run
/// publishes within seconds; one that died leaves them to the run after the lease).
pub(super) const OWED_LEASE: Duration = Duration::minutes(2);

/// The owed pages of rule healths, as one run sends them.
pub(super) struct HealthPages<'a, L> {
    pub ledger: &'a L,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl<L: CanaryStore> HealthPages<'_, L> {
    /// Whether another run holds a live claim on the health's owed pages.
    pub fn held_by_another(&self, health: &RuleHealth) -> bool {
        health
            .owed_claimed_at
            .is_some_and(|at| at > self.now - OWED_LEASE)
    }
}

impl<L: CanaryStore> Outbox for HealthPages<'_, L> {
    type Owed = AtRevision<RuleHealth>;
    type Claim = Written<RuleHealth>;

    /// Also stores the health's new counts: the pages a count owes are claimed in the same
    /// write that records them.
    async fn claim(
        &self,
        owed: &AtRevision<RuleHealth>,
    ) -> Result<Claimed<Written<RuleHealth>, AtRevision<RuleHealth>>, LedgerError> {
        let mut health = owed.item.clone();
        health.owed_claimed_at = Some(self.now);
        if !self
            .ledger
            .put_health(&health, owed.revision, self.expires_at)
            .await?
        {
            return Ok(Claimed::Changed(None));
        }
        Ok(Claimed::Taken(owed.written(health)))
    }

    async fn confirm(&self, claim: &Written<RuleHealth>, sent: usize) -> Result<(), LedgerError> {
        self.settle(claim, sent).await
    }

    async fn release(&self, claim: &Written<RuleHealth>) -> Result<(), LedgerError> {
        self.settle(claim, 0).await
    }
}

impl<L: CanaryStore> HealthPages<'_, L> {
    /// Drop the claim and the first `sent` owed pages. Another run may have counted into the
    /// health meanwhile (keeping our claim and the pages, and perhaps owing more): the sent
    /// pages are then taken out of what it wrote, so that they are never sent again.
    async fn settle(&self, claim: &Written<RuleHealth>, sent: usize) -> Result<(), LedgerError> {
        let sent_pages = &claim.item.owed[..sent.min(claim.item.owed.len())];
        let (mut health, mut revision) = (claim.item.clone(), claim.revision);
        for _ in 0..4 {
            if health.owed_claimed_at != claim.item.owed_claimed_at {
                // Our claim is gone (another run took the pages over after the lease).
                return Ok(());
            }
            for page in sent_pages {
                if let Some(position) = health.owed.iter().position(|owed| owed == page) {
                    health.owed.remove(position);
                }
            }
            health.owed_claimed_at = None;
            if sent > 0 {
                health.owed_dropped = 0;
            }
            if self
                .ledger
                .put_health(&health, Some(revision), self.expires_at)
                .await?
            {
                return Ok(());
            }
            let Some((current, current_revision)) = self
                .ledger
                .health(
                    &health.source_bucket,
                    &health.destination_bucket,
                    &health.rule_id,
                )
                .await?
            else {
                return Ok(());
            };
            (health, revision) = (current, current_revision);
        }
        Err(LedgerError::Unavailable {
            operation: "confirm canary pages",
            detail: "the rule's health kept changing".into(),
        })
    }
}

/// Audit notices: a claim is the notice itself for one audit period (nothing to confirm);
/// released when its publish failed, so the next run notices again.
pub(super) struct AuditNotices<'a, L> {
    pub ledger: &'a L,
    pub source_bucket: &'a str,
    pub now: DateTime<Utc>,
    pub period: Duration,
}

impl<L: CanaryStore> Outbox for AuditNotices<'_, L> {
    /// The finding's ID.
    type Owed = String;
    type Claim = String;

    async fn claim(&self, finding: &String) -> Result<Claimed<String, String>, LedgerError> {
        Ok(
            if self
                .ledger
                .claim_notice(self.source_bucket, finding, self.now, self.period)
                .await?
            {
                Claimed::Taken(finding.clone())
            } else {
                // Noticed within the period already.
                Claimed::Changed(None)
            },
        )
    }

    async fn confirm(&self, _: &String, _: usize) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn release(&self, finding: &String) -> Result<(), LedgerError> {
        self.ledger
            .release_notice(self.source_bucket, finding)
            .await
    }
}
