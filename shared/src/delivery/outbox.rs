//! The outbox: how a page owed to on-call goes out at most once per incident and window.
//!
//! A feature records that a page is owed in its own state (an incident's page counter, an alarm
//! record's pending notification, a rule health's owed pages) and claims it with a lease, in the
//! same write as the state change where it can (the outbox pattern: no page without its state, no
//! state change without its page). [`deliver`] does the rest the same way for every feature:
//! publish, then confirm (the page is out and is never sent again for that window) or release
//! (publishing failed: the next attempt sends it without waiting for the lease to run out).
//!
//! A claim whose holder died expires with its lease, and the next attempt sends the page. A
//! confirmation that fails after the page went out is retried a few times and then logged and
//! acknowledged: failing the messages would have them retried, and the retry would page again
//! once the lease ran out. That window (an unconfirmed page, a lease, a retry) is the one place
//! a second page can follow; the claim keeps it to one lease at least.

use crate::backoff::jittered;
use crate::delivery::page::{Notifier, NotifyError, Page};
use crate::delivery::text::Untrusted;
use crate::ledger::LedgerError;
use std::future::Future;
use std::time::Duration;

/// Attempts at a confirmation or release that failed for a reason that may pass (a plain write
/// meeting the commit of another invocation on the same item, throttling).
const ATTEMPTS: u32 = 4;
/// The first pause between those attempts (then doubling, jittered).
const PAUSE: Duration = Duration::from_millis(20);

/// Where a feature keeps the pages it owes.
pub trait Outbox: Send + Sync {
    /// What is owed, as the caller last saw it (the claim is conditional on it still holding).
    type Owed: Send + Sync;
    /// A claim taken: what confirming or releasing it needs, and what the page is built from.
    type Claim: Send + Sync;

    /// Claim what is owed for one lease.
    fn claim(
        &self,
        owed: &Self::Owed,
    ) -> impl Future<Output = Result<Claimed<Self::Claim, Self::Owed>, LedgerError>> + Send;

    /// Record that the claim's first `sent` pages went out (the rest stay owed) and end it.
    fn confirm(
        &self,
        claim: &Self::Claim,
        sent: usize,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// End the claim with nothing sent: the pages stay owed for the next attempt.
    fn release(&self, claim: &Self::Claim) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

/// The answer to a claim, with what is owed as it stands when the claim was refused (`S`).
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed<C, S> {
    /// Ours for one lease: send.
    Taken(C),
    /// What is owed changed since it was read (another invocation sent it; `None`: nothing is
    /// owed any more): decide again from what stands now.
    Changed(Option<S>),
    /// Another invocation holds a live claim and is sending right now: wait for its outcome.
    Held(S),
}

/// What [`deliver`] did.
#[derive(Debug)]
pub struct Delivered {
    /// How many of the pages went out (in order: a failed publish stops the rest).
    pub sent: usize,
    /// Why the rest did not.
    pub error: Option<NotifyError>,
}

/// Publish the claimed pages in order, then confirm what went out or release the claim.
/// `what` names the claim in the logs (an incident, an alarm).
pub async fn deliver<O: Outbox, N: Notifier>(
    outbox: &O,
    notifier: &N,
    claim: &O::Claim,
    pages: &[Page],
    what: &str,
) -> Delivered {
    let mut delivered = Delivered {
        sent: 0,
        error: None,
    };
    for page in pages {
        match notifier.publish(page).await {
            Ok(()) => delivered.sent += 1,
            Err(error) => {
                delivered.error = Some(error);
                break;
            }
        }
    }
    if delivered.sent == 0 {
        release(outbox, claim, what).await;
    } else if let Err(error) = again(|| outbox.confirm(claim, delivered.sent)).await {
        tracing::error!(%error, what = %Untrusted(what), sent = delivered.sent, "page sent but not recorded as sent; acknowledged so that no retry sends it again (the claim holds others off until its lease ends)");
    }
    delivered
}

/// End a claim with nothing sent (a failed publish, or nothing worth sending after all): the
/// pages stay owed. A release that keeps failing is logged; the claim then expires with its
/// lease.
pub async fn release<O: Outbox>(outbox: &O, claim: &O::Claim, what: &str) {
    if let Err(error) = again(|| outbox.release(claim)).await {
        tracing::warn!(%error, what = %Untrusted(what), "could not release the page claim; it expires with its lease");
    }
}

/// An item as read (or as decided) and the revision it was read at (`None`: not stored yet):
/// what an outbox whose claim is a revision-guarded write of the item is owed.
pub struct AtRevision<T> {
    pub item: T,
    pub revision: Option<u64>,
}

/// An item as a revision-guarded write stored it, at the revision that write made.
pub struct Written<T> {
    pub item: T,
    pub revision: u64,
}

impl<T> AtRevision<T> {
    /// `item`, stored by a write guarded on this revision.
    pub fn written(&self, item: T) -> Written<T> {
        Written {
            item,
            revision: self.revision.map_or(1, |r| r + 1),
        }
    }
}

/// A ledger call, again after a jittered pause while it fails for a reason that may pass.
async fn again<F, T>(mut call: impl FnMut() -> F) -> Result<T, LedgerError>
where
    F: Future<Output = Result<T, LedgerError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(error) if error.retryable() && attempt + 1 < ATTEMPTS => {
                tokio::time::sleep(jittered(PAUSE * 2u32.pow(attempt))).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests;
