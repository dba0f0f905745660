//! A batch's events into the ledger: one commit per chunk of objects, holding their records and
//! the counts they move, retried in rounds until what it assumed about the stored items holds.
//!
//! The first round assumes every object and incident is new: the common case of a storm's first
//! delivery. A wrong assumption cancels the commit, and the cancellation answers what is stored
//! (each failed condition returns its item), so the next round merges into the stored records,
//! counts only what is new and adds to the incidents that exist. A redelivered batch costs one
//! cancelled commit: every record is there, so nothing is left to count.

use crate::backoff::jittered;
use crate::event::ReplicationEvent;
use crate::incident::{Incident, IncidentKey};
use crate::ledger::{
    commit_token, Commit, CommitOutcome, Effect, IncidentMode, Ledger, LedgerError, PageClaim,
    StoredIncident, Verdict, Write, MAX_COMMIT_WRITES,
};
use chrono::{DateTime, Duration, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Cow;
use std::time::Duration as StdDuration;

pub(super) use super::known::KnownIncidents;
use super::plan::{plan, units, Round, Unit};

/// Objects (and markers) per commit; a chunk whose incidents push it past DynamoDB's 100
/// actions is halved.
const CHUNK: usize = 40;
/// Rounds of a chunk before its messages go back for retry: each round learns what the last
/// one's conditions found, so more than two or three means items are changing under us.
const MAX_ROUNDS: u32 = 8;
/// Sends of one commit with the same token when its outcome is unknown (after the SDK's own
/// retries): a commit that went through is answered as done.
const MAX_SENDS: u32 = 3;
/// The first pause after a commit met another transaction on one of its items.
const BUSY_PAUSE: StdDuration = StdDuration::from_millis(10);
/// Pauses (10 ms doubling to 640 ms, about 2.5 s in all) for items other transactions hold.
const MAX_BUSY_ROUNDS: u32 = 10;

/// What an incident looks like after the batch, as far as the commits showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Known {
    /// Not learnt (read it if it matters).
    #[default]
    Unknown,
    Absent,
    Stored(Incident),
    /// Only this process's memory of it: its pages are at least as far as this (they only move
    /// forward), its counts may lag what other processes counted.
    Remembered(Incident),
}

/// One incident after the batch's commits.
#[derive(Debug, Clone, Default)]
pub(super) struct IncidentAfter {
    pub known: Known,
    /// A commit moved its counts.
    pub moved: bool,
    /// A commit created it and took this first page claim.
    pub claim: Option<PageClaim>,
}

/// An incident's key as the batch's events hold it (borrowed), or one a commit named that no
/// event of the batch does (owned). A storm's batch touches each key many times: borrowing
/// saves cloning it at every step.
pub(super) type KeyOf<'k> = Cow<'k, IncidentKey>;

/// The outcome of writing a batch: per event (in the order given), what it changed or why it
/// failed, and what the commits showed of each incident.
pub(super) struct Written<'k> {
    pub events: Vec<Result<Effect, LedgerError>>,
    pub incidents: FxHashMap<KeyOf<'k>, IncidentAfter>,
}

/// What commits need besides the events.
pub(super) struct WriteContext<'a> {
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub page_lease: Duration,
    pub claim_token: &'a (dyn Fn() -> String + Sync),
    pub known: &'a KnownIncidents,
}

/// Write every event, chunk by chunk.
pub(super) async fn write_events<'k, L: Ledger>(
    ledger: &L,
    events: &[(&ReplicationEvent, &'k IncidentKey)],
    context: &WriteContext<'_>,
) -> Written<'k> {
    let mut written = Written {
        events: (0..events.len())
            .map(|_| {
                Err(LedgerError::Unavailable {
                    operation: "commit",
                    detail: "not attempted".into(),
                })
            })
            .collect(),
        incidents: FxHashMap::default(),
    };
    // Split from the end (moving the units, not copying them), so that `pop` takes the chunks
    // from the last.
    let mut units = units(events);
    let mut chunks: Vec<Vec<Unit>> = Vec::with_capacity(units.len().div_ceil(CHUNK));
    while !units.is_empty() {
        let last = units.split_off((units.len() - 1) / CHUNK * CHUNK);
        chunks.push(last);
    }
    chunks.reverse();
    // Chunks run one after another: concurrent chunks of one batch would contend for the same
    // incident items.
    while let Some(chunk) = chunks.pop() {
        // Boxed: the rounds' future is deep, and its layout would be inlined into every caller.
        let halves = Box::pin(write_chunk(ledger, events, chunk, context, &mut written)).await;
        if let Some((first, second)) = halves {
            chunks.push(first);
            chunks.push(second);
        }
    }
    written
}
/// Commit one chunk in rounds; answers two halves instead when it is too big for one commit.
async fn write_chunk<'k, L: Ledger>(
    ledger: &L,
    events: &[(&ReplicationEvent, &'k IncidentKey)],
    mut chunk: Vec<Unit>,
    context: &WriteContext<'_>,
    written: &mut Written<'k>,
) -> Option<(Vec<Unit>, Vec<Unit>)> {
    // What the chunk's rounds learnt about its incidents (`None`: absent), starting from what
    // this process saw before.
    let mut incidents: FxHashMap<KeyOf<'k>, Option<StoredIncident>> = FxHashMap::default();
    // Incidents whose picture is only this process's memory (counters possibly stale), until a
    // cancellation answers what is stored.
    let mut remembered: FxHashSet<&IncidentKey> = FxHashSet::default();
    for unit in &chunk {
        for &position in &unit.events {
            let key = events[position].1;
            if !incidents.contains_key(key) {
                if let Some(incident) = context.known.get(key) {
                    incidents.insert(
                        Cow::Borrowed(key),
                        Some(StoredIncident {
                            incident,
                            migrated: true,
                        }),
                    );
                    remembered.insert(key);
                }
            }
        }
    }
    let (mut rounds, mut busy_rounds) = (0, 0);
    let mut last_error: Option<LedgerError> = None;
    // A round that met another transaction learnt nothing and does not count as one; waiting
    // for busy items has its own bound.
    while rounds < MAX_ROUNDS && busy_rounds <= MAX_BUSY_ROUNDS {
        rounds += 1;
        let round = plan(events, &chunk, &incidents, context);
        let round = match round {
            Ok(round) => round,
            Err((units, error)) => {
                // An incident of the old layout: its units wait for the migration, the rest go on.
                for unit in units {
                    chunk[unit].failed = Some(error.clone());
                }
                continue;
            }
        };
        if round.writes.is_empty() {
            finish(
                &chunk,
                round,
                incidents,
                &remembered,
                None,
                context,
                written,
            );
            return None;
        }
        if commit_actions(&round.writes) > MAX_COMMIT_WRITES && chunk.len() > 1 {
            let second = chunk.split_off(chunk.len() / 2);
            return Some((chunk, second));
        }
        let Round {
            writes,
            owners,
            effects,
            deltas,
        } = round;
        let commit = Commit {
            token: commit_token(),
            writes,
            now: context.now,
            expires_at: context.expires_at,
        };
        match send(ledger, &commit).await {
            Ok(CommitOutcome::Committed) => {
                let round = Round {
                    writes: Vec::new(),
                    owners,
                    effects,
                    deltas,
                };
                finish(
                    &chunk,
                    round,
                    incidents,
                    &remembered,
                    Some(&commit),
                    context,
                    written,
                );
                return None;
            }
            Ok(CommitOutcome::Cancelled { verdicts, busy }) => {
                let mut learnt = false;
                for (verdict, (write, owner)) in
                    verdicts.into_iter().zip(commit.writes.iter().zip(&owners))
                {
                    match (verdict, write, owner) {
                        (Verdict::Object(stored), _, Some(unit)) => {
                            chunk[*unit].stored = Some(stored);
                            learnt = true;
                        }
                        (Verdict::Unreadable(error), _, Some(unit)) => {
                            chunk[*unit].failed = Some(error);
                            learnt = true;
                        }
                        (Verdict::Unreadable(error), Write::Incident { key, .. }, None) => {
                            // Every unit with an event of that incident waits for a fix.
                            for unit in chunk.iter_mut() {
                                if unit.events.iter().any(|&p| events[p].1 == key) {
                                    unit.failed = Some(error.clone());
                                }
                            }
                            learnt = true;
                        }
                        (Verdict::MarkerExists, _, Some(unit)) => {
                            chunk[*unit].marker_exists = true;
                            learnt = true;
                        }
                        (Verdict::Incident(stored), Write::Incident { key, .. }, _) => {
                            remembered.remove(key);
                            match incidents.get_mut(key) {
                                Some(known) => *known = stored,
                                None => {
                                    incidents.insert(Cow::Owned(key.clone()), stored);
                                }
                            }
                            learnt = true;
                        }
                        // Its condition held: what the round assumed is what is stored.
                        (Verdict::Held, Write::Object { expected: None, .. }, Some(unit))
                            if chunk[*unit].stored.is_none() =>
                        {
                            chunk[*unit].stored = Some(None);
                        }
                        (
                            Verdict::Held,
                            Write::Incident {
                                key,
                                mode: IncidentMode::Create { .. },
                                ..
                            },
                            _,
                        ) if !incidents.contains_key(key) => {
                            incidents.insert(Cow::Owned(key.clone()), None);
                        }
                        _ => {}
                    }
                }
                if busy || !learnt {
                    tokio::time::sleep(jittered(BUSY_PAUSE * 2u32.pow(busy_rounds.min(6)))).await;
                    busy_rounds += 1;
                    if busy {
                        rounds -= 1;
                    }
                }
            }
            // Sent again already: the messages go back for a later retry.
            Err(error) => {
                last_error = Some(error);
                break;
            }
        }
    }
    let error = last_error.unwrap_or(LedgerError::Unavailable {
        operation: "commit",
        detail: format!("items still changing after {rounds} rounds ({busy_rounds} waits for other transactions)"),
    });
    for unit in &chunk {
        let error = unit.failed.clone().unwrap_or_else(|| error.clone());
        for &position in &unit.events {
            written.events[position] = Err(error.clone());
        }
    }
    None
}

/// Send a commit; an unknown outcome (a timeout, a 5xx after the SDK's retries) is sent again
/// with the same token, which answers the first send's success if it had one.
async fn send<L: Ledger>(ledger: &L, commit: &Commit) -> Result<CommitOutcome, LedgerError> {
    let mut attempt = 0;
    loop {
        match ledger.commit(commit).await {
            Err(error) if error.retryable() && attempt + 1 < MAX_SENDS => {
                tracing::warn!(%error, attempt, "commit outcome unknown; sending it again with its token");
                tokio::time::sleep(jittered(BUSY_PAUSE * 2u32.pow(attempt))).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Actions the commit takes in DynamoDB: its writes and a catalog entry per source it opens an
/// incident in.
fn commit_actions(writes: &[Write]) -> usize {
    let mut sources: Vec<&str> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Incident {
                key,
                mode: IncidentMode::Create { .. },
                ..
            } => Some(key.source_bucket.as_str()),
            _ => None,
        })
        .collect();
    sources.sort_unstable();
    sources.dedup();
    writes.len() + sources.len()
}
/// Record the chunk's final round: each event's effect, and each incident as the commit left
/// it (`commit`: `None` when nothing needed writing).
fn finish<'k>(
    chunk: &[Unit],
    round: Round<'k>,
    incidents: FxHashMap<KeyOf<'k>, Option<StoredIncident>>,
    remembered: &FxHashSet<&IncidentKey>,
    commit: Option<&Commit>,
    context: &WriteContext<'_>,
    written: &mut Written<'k>,
) {
    for unit in chunk {
        if let Some(error) = &unit.failed {
            for &position in &unit.events {
                written.events[position] = Err(error.clone());
            }
        }
    }
    for (position, effect) in round.effects {
        written.events[position] = Ok(effect);
    }
    let committed: FxHashSet<&IncidentKey> = commit
        .map(|commit| commit.incidents().map(|(key, _, _)| key).collect())
        .unwrap_or_default();
    // What the rounds learnt, for incidents the commit did not write; for those it did, the
    // base it added to (what this chunk's rounds read: they chose the mode from it). Moved,
    // not copied: the rounds are over.
    let mut bases: FxHashMap<KeyOf<'k>, Incident> = FxHashMap::default();
    for (key, stored) in incidents {
        if committed.contains(&*key) {
            if let Some(stored) = stored {
                bases.insert(key, stored.incident);
            }
            continue;
        }
        // Cloning a borrowed key copies a reference.
        let after = written.incidents.entry(key.clone()).or_default();
        if !after.moved {
            after.known = match stored {
                Some(stored) if remembered.contains(&*key) => Known::Remembered(stored.incident),
                Some(stored) => Known::Stored(stored.incident),
                None => Known::Absent,
            };
        }
    }
    for (key, _) in &round.deltas {
        written.incidents.entry(key.clone()).or_default();
    }
    let Some(commit) = commit else { return };
    for (key, delta, mode) in commit.incidents() {
        // Every incident the commit wrote is one of the round's deltas, entered above.
        let after = match written.incidents.get_mut(key) {
            Some(after) => after,
            None => written
                .incidents
                .entry(Cow::Owned(key.clone()))
                .or_default(),
        };
        let base = match mode {
            IncidentMode::Create { .. } => None,
            IncidentMode::Add { .. } => bases.remove(key),
        };
        after.known = Known::Stored(match base {
            Some(mut incident) => {
                delta.add_to(&mut incident, context.now);
                incident
            }
            None => delta.opened(key, context.now),
        });
        after.moved = true;
        if let IncidentMode::Create {
            first_page: Some(claim),
        } = mode
        {
            after.claim = Some(claim.clone());
        }
    }
}
