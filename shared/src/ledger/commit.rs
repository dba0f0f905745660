//! One batch's writes as one atomic, idempotent commit: the object records (and not-tracked
//! markers) together with the incident counts they move.
//!
//! Writing an object and moving its incident's counters in separate requests leaves windows
//! where one happened without the other (a crash in between, a lost response the SDK retries, a
//! count update that fails after the writes), and each window loses or doubles a count. In one
//! transaction there is no window: a record is in the ledger exactly when its counts are, so a
//! redelivery that finds its record already there has nothing to count. The commit's token makes
//! a retried request (the SDK's, after a timeout or a 5xx whose outcome is unknown) answer the
//! first one's success instead of applying it again.

use super::LedgerError;
use super::{IncidentDelta, ObjectRecord, PageClaim};
use crate::event::ReplicationEvent;
use crate::incident::{Incident, IncidentKey};
use chrono::{DateTime, Utc};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

/// DynamoDB takes at most 100 actions per transaction.
pub const MAX_COMMIT_WRITES: usize = 100;

/// Writes that commit together or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// Names this request: sent again with the same token (within DynamoDB's ten minutes), a
    /// commit that went through is answered as done and not applied twice.
    pub token: String,
    pub writes: Vec<Write>,
    /// When the counts moved (the incident's `last_recorded_at`, `opened_at` if created).
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One write of a commit, with the condition it holds under.
#[derive(Debug, Clone, PartialEq)]
// Objects are the common write; boxing them would add an allocation per write for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Write {
    /// The record, if the stored one is still at `expected` (`None`: if there is none).
    /// Shared: a store may keep it as it is (the in-memory ledger does) instead of copying it.
    Object {
        record: Arc<ObjectRecord>,
        expected: Option<u64>,
    },
    /// A not-tracked event's marker in its incident, if not there yet.
    Marker {
        incident: IncidentKey,
        event: ReplicationEvent,
    },
    /// Move an incident's counters.
    Incident {
        key: IncidentKey,
        delta: IncidentDelta,
        mode: IncidentMode,
    },
}

/// How an incident's counters move, and what must hold for it.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentMode {
    /// Create it with the delta as its counts, taking its first page claim: only if it does not
    /// exist.
    Create { first_page: Option<PageClaim> },
    /// Add the delta to an incident of this layout and widen its span: `lower_first` (the
    /// batch's first event is earlier than the stored one) and `raise_last` (its last is later)
    /// are guesses from what was last read; a wrong guess fails the condition, which answers the
    /// stored incident for the next round.
    Add { lower_first: bool, raise_last: bool },
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Every write is in, with its counts (or was, by an earlier request with the same token).
    Committed,
    /// Nothing was written. One verdict per write, in order; `busy`: another transaction held
    /// one of the items (retry after a moment, the conditions may all hold then).
    Cancelled { verdicts: Vec<Verdict>, busy: bool },
}

/// Why a cancelled commit's write did not go in, with what is stored instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Its condition held; another write cancelled the commit.
    Held,
    /// The object record is not at the expected revision: the stored one (`None`: none).
    Object(Option<(ObjectRecord, u64)>),
    /// The marker is there already: the event was counted.
    MarkerExists,
    /// The incident is not as the mode expects: the stored one (`None`: none).
    Incident(Option<StoredIncident>),
    /// Its condition failed and the stored item is unreadable: the events that write belongs to
    /// fail (and are retried, then dead-lettered); the rest of the commit goes on.
    Unreadable(LedgerError),
}

/// An incident as stored, with whether it has this release's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIncident {
    pub incident: Incident,
    /// Written by this release (or migrated): it has counters to add to. An incident of the
    /// layout before the one-write ledger is never counted into until `replmon migrate` ran.
    pub migrated: bool,
}

/// A token unique to this process and call: a random per-process prefix and a counter, 32
/// characters (DynamoDB takes at most 36).
pub fn commit_token() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        // RandomState is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(std::process::id() as u128);
        hasher.finish()
    });
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Commit {
    /// The incident writes' keys, in order.
    pub fn incidents(&self) -> impl Iterator<Item = (&IncidentKey, &IncidentDelta, &IncidentMode)> {
        self.writes.iter().filter_map(|w| match w {
            Write::Incident { key, delta, mode } => Some((key, delta, mode)),
            _ => None,
        })
    }
}

impl IncidentDelta {
    /// Whether committing it would change the incident.
    pub fn moves(&self) -> bool {
        self.events > 0 || self.recovered > 0 || self.backlog != 0 || self.span.is_some()
    }

    /// Add this delta to the incident at `now`, as a commit does.
    pub fn add_to(&self, incident: &mut Incident, now: DateTime<Utc>) {
        incident.event_count += self.events;
        incident.recovered_count += self.recovered;
        incident.backlog_count += self.backlog;
        if let Some((first, last)) = self.span {
            incident.first_seen = Some(incident.first_seen.map_or(first, |t| t.min(first)));
            incident.last_seen = Some(incident.last_seen.map_or(last, |t| t.max(last)));
            incident.last_recorded_at = Some(now);
        }
    }

    /// The incident a commit creates with this delta as its counts.
    pub fn opened(&self, key: &IncidentKey, now: DateTime<Utc>) -> Incident {
        let mut opened = Incident {
            key: key.clone(),
            opened_at: now,
            first_seen: None,
            last_seen: None,
            event_count: 0,
            recovered_count: 0,
            backlog_count: 0,
            pages_sent: 0,
            first_page_at: None,
            last_page_at: None,
            event_count_at_last_page: 0,
            last_recorded_at: None,
        };
        self.add_to(&mut opened, now);
        opened
    }
}
