//! A batch's events into the ledger: one commit per chunk of objects, holding their records and
//! the counts they move, retried in rounds until what it assumed about the stored items holds.
//!
//! The first round assumes every object and incident is new: the common case of a storm's first
//! delivery. A wrong assumption cancels the commit, and the cancellation answers what is stored
//! (each failed condition returns its item), so the next round merges into the stored records,
//! counts only what is new and adds to the incidents that exist. A redelivered batch costs one
//! cancelled commit: every record is there, so nothing is left to count.

use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::{Incident, IncidentKey};
use crate::ledger::{
    commit_token, membership, Commit, CommitOutcome, Counted, Effect, IncidentDelta, IncidentMode,
    Ledger, LedgerError, ObjectRecord, PageClaim, StoredIncident, Verdict, Write,
    MAX_COMMIT_WRITES,
};
use chrono::{DateTime, Duration, Utc};
use rustc_hash::FxHashMap;
use std::time::Duration as StdDuration;

pub(super) use super::known::KnownIncidents;

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

/// What an incident looks like after the batch, as far as the commits showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Known {
    /// Not learnt (read it if it matters).
    #[default]
    Unknown,
    Absent,
    Stored(Incident),
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

/// The outcome of writing a batch: per event (in the order given), what it changed or why it
/// failed, and what the commits showed of each incident.
pub(super) struct Written {
    pub events: Vec<Result<Effect, LedgerError>>,
    pub incidents: FxHashMap<IncidentKey, IncidentAfter>,
}

/// What commits need besides the events.
pub(super) struct WriteContext<'a> {
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub page_lease: Duration,
    pub claim_token: &'a (dyn Fn() -> String + Sync),
    pub known: &'a KnownIncidents,
}

/// A chunk's unit of writing: an object version with its events, or a not-tracked marker.
#[derive(Debug, Clone)]
struct Unit {
    /// Positions in the batch's events.
    events: Vec<usize>,
    /// What is stored, once a round learnt it: `Some(None)`, known absent.
    stored: Option<Option<(ObjectRecord, u64)>>,
    marker: bool,
    /// A marker found stored: its event was counted.
    marker_exists: bool,
    /// Set when the unit cannot be written (its incident is of the old layout).
    failed: Option<LedgerError>,
}

/// One round's plan for a chunk.
#[derive(Default)]
struct Round {
    writes: Vec<Write>,
    /// Per write: the unit it belongs to (`None`: an incident write).
    owners: Vec<Option<usize>>,
    effects: Vec<(usize, Effect)>,
    deltas: Vec<(IncidentKey, IncidentDelta)>,
}

/// Write every event, chunk by chunk.
pub(super) async fn write_events<L: Ledger>(
    ledger: &L,
    events: &[(&ReplicationEvent, &IncidentKey)],
    context: &WriteContext<'_>,
) -> Written {
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
    let units = units(events);
    let mut chunks: Vec<Vec<Unit>> = units.chunks(CHUNK).map(<[Unit]>::to_vec).collect();
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

/// Group the events by object version (in order) and give each not-tracked event its marker.
fn units(events: &[(&ReplicationEvent, &IncidentKey)]) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    let mut objects: FxHashMap<(&str, &str, &str, Option<&str>), usize> = FxHashMap::default();
    let mut markers: FxHashMap<(&IncidentKey, crate::event::EventId), usize> = FxHashMap::default();
    for (position, (event, key)) in events.iter().enumerate() {
        let slot = if event.kind == ReplicationEventKind::OperationNotTracked {
            markers.get(&(*key, event.id())).copied()
        } else {
            objects
                .get(&(
                    event.source_bucket.as_str(),
                    event.destination_bucket.as_str(),
                    event.key.as_str(),
                    event.version_id.as_deref(),
                ))
                .copied()
        };
        match slot {
            Some(unit) => units[unit].events.push(position),
            None => {
                let marker = event.kind == ReplicationEventKind::OperationNotTracked;
                if marker {
                    markers.insert((*key, event.id()), units.len());
                } else {
                    objects.insert(
                        (
                            event.source_bucket.as_str(),
                            event.destination_bucket.as_str(),
                            event.key.as_str(),
                            event.version_id.as_deref(),
                        ),
                        units.len(),
                    );
                }
                units.push(Unit {
                    events: vec![position],
                    stored: None,
                    marker,
                    marker_exists: false,
                    failed: None,
                });
            }
        }
    }
    units
}

/// Commit one chunk in rounds; answers two halves instead when it is too big for one commit.
async fn write_chunk<L: Ledger>(
    ledger: &L,
    events: &[(&ReplicationEvent, &IncidentKey)],
    mut chunk: Vec<Unit>,
    context: &WriteContext<'_>,
    written: &mut Written,
) -> Option<(Vec<Unit>, Vec<Unit>)> {
    // What the chunk's rounds learnt about its incidents (`None`: absent), starting from what
    // this process saw before.
    let mut incidents: FxHashMap<IncidentKey, Option<StoredIncident>> = FxHashMap::default();
    for unit in &chunk {
        for &position in &unit.events {
            let key = events[position].1;
            if !incidents.contains_key(key) {
                if let Some(incident) = context.known.get(key) {
                    incidents.insert(
                        key.clone(),
                        Some(StoredIncident {
                            incident,
                            migrated: true,
                        }),
                    );
                }
            }
        }
    }
    let mut busy_rounds = 0;
    let mut last_error: Option<LedgerError> = None;
    for _ in 0..MAX_ROUNDS {
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
            finish(&chunk, round, &incidents, None, context, written);
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
                finish(&chunk, round, &incidents, Some(&commit), context, written);
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
                        (Verdict::MarkerExists, _, Some(unit)) => {
                            chunk[*unit].marker_exists = true;
                            learnt = true;
                        }
                        (Verdict::Incident(stored), Write::Incident { key, .. }, _) => {
                            incidents.insert(key.clone(), stored);
                            learnt = true;
                        }
                        // Its condition held: what the round assumed is what is stored.
                        (Verdict::Held, Write::Object { expected: None, .. }, Some(unit))
                            if chunk[*unit].stored.is_none() =>
                        {
                            chunk[*unit].stored = Some(None);
                        }
                        (Verdict::Held, Write::Incident { key, mode, .. }, _) => {
                            if matches!(mode, IncidentMode::Create { .. }) {
                                incidents.entry(key.clone()).or_insert(None);
                            }
                        }
                        _ => {}
                    }
                }
                if busy || !learnt {
                    tokio::time::sleep(BUSY_PAUSE * 2u32.pow(busy_rounds.min(6))).await;
                    busy_rounds += 1;
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
        detail: format!("items still changing after {MAX_ROUNDS} rounds"),
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
                tokio::time::sleep(BUSY_PAUSE * 2u32.pow(attempt)).await;
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

/// The round's writes from what is known: each unit's events folded into its stored record,
/// and the incidents' deltas. `Err`: a unit whose incident is of the old layout.
fn plan(
    events: &[(&ReplicationEvent, &IncidentKey)],
    chunk: &[Unit],
    incidents: &FxHashMap<IncidentKey, Option<StoredIncident>>,
    context: &WriteContext<'_>,
) -> Result<Round, (Vec<usize>, LedgerError)> {
    let mut round = Round::default();
    let mut delta_of: FxHashMap<IncidentKey, usize> = FxHashMap::default();
    let mut touches: Vec<(usize, usize)> = Vec::new();
    let mut delta = |round: &mut Round, key: &IncidentKey, unit: usize| -> usize {
        // Most events of a batch share a few incidents: the key is cloned once per incident.
        let position = match delta_of.get(key) {
            Some(&position) => position,
            None => {
                round.deltas.push((key.clone(), IncidentDelta::default()));
                delta_of.insert(key.clone(), round.deltas.len() - 1);
                round.deltas.len() - 1
            }
        };
        touches.push((position, unit));
        position
    };
    for (index, unit) in chunk.iter().enumerate() {
        if unit.failed.is_some() {
            continue;
        }
        if unit.marker {
            let (event, key) = events[unit.events[0]];
            let new = !unit.marker_exists;
            for (n, &position) in unit.events.iter().enumerate() {
                let counted = new && n == 0;
                round.effects.push((
                    position,
                    Effect {
                        counted: counted.then_some(Counted::Event),
                        backlog: (None, None),
                        changed: counted,
                    },
                ));
            }
            if new {
                let d = delta(&mut round, key, index);
                count(
                    &mut round.deltas[d].1,
                    Counted::Event,
                    Some(event.event_time),
                );
                round.writes.push(Write::Marker {
                    incident: key.clone(),
                    event: event.clone(),
                });
                round.owners.push(Some(index));
            }
            continue;
        }
        let stored = unit.stored.clone().flatten();
        let mut current: Option<ObjectRecord> = stored.as_ref().map(|(r, _)| r.clone());
        for &position in &unit.events {
            let (event, key) = events[position];
            let Some((record, effect)) = ObjectRecord::apply(current.as_ref(), event) else {
                continue;
            };
            if let Some(counted) = effect.counted {
                let d = delta(&mut round, key, index);
                let arrival = event.kind == ReplicationEventKind::OperationReplicatedAfterThreshold;
                let at = (effect.changed && !arrival).then_some(event.event_time);
                count(&mut round.deltas[d].1, counted, at);
            } else if effect.changed
                && event.kind != ReplicationEventKind::OperationReplicatedAfterThreshold
                && membership(event).is_some()
            {
                // Not new to its incident, but it moved the record (an earlier failure time,
                // say): the incident's span still widens.
                let d = delta(&mut round, key, index);
                widen(&mut round.deltas[d].1, event.event_time);
            }
            round.effects.push((position, effect));
            current = Some(record);
        }
        let Some(record) = current else { continue };
        let before = stored.as_ref().map(|(r, _)| r);
        if before == Some(&record) {
            continue;
        }
        let (was, now) = (
            before.and_then(ObjectRecord::backlog_cause),
            record.backlog_cause(),
        );
        if was != now {
            for (cause, step) in [(was, -1i64), (now, 1)] {
                if let Some(cause) = cause {
                    // Usually the incident of the unit's own event: no key to build.
                    let own = events[unit.events[0]].1;
                    let d = if own.cause == cause
                        && own.source_bucket == record.source_bucket
                        && own.rule_id == record.rule_id
                        && own.destination_bucket == record.destination_bucket
                    {
                        delta(&mut round, own, index)
                    } else {
                        delta(&mut round, &record.incident(cause), index)
                    };
                    round.deltas[d].1.backlog += step;
                }
            }
        }
        round.writes.push(Write::Object {
            expected: stored.as_ref().map(|(_, revision)| *revision),
            record,
        });
        round.owners.push(Some(index));
    }
    for (key, delta) in &round.deltas {
        if !delta.moves() {
            continue;
        }
        let mode = match incidents.get(key) {
            None | Some(None) => IncidentMode::Create {
                first_page: (delta.events > 0).then(|| PageClaim {
                    token: (context.claim_token)(),
                    at: context.now,
                    expected_pages_sent: 0,
                    lease: context.page_lease,
                }),
            },
            Some(Some(stored)) if !stored.migrated => {
                let position = delta_of[key];
                let units = touches
                    .iter()
                    .filter(|(d, _)| *d == position)
                    .map(|(_, unit)| *unit)
                    .collect();
                return Err((units, LedgerError::NotMigrated { incident: key.id() }));
            }
            Some(Some(stored)) => {
                let (first, last) = delta.span.unzip();
                IncidentMode::Add {
                    lower_first: first
                        .zip(stored.incident.first_seen)
                        .is_some_and(|(ours, theirs)| ours < theirs),
                    raise_last: last.is_some_and(|ours| {
                        stored.incident.last_seen.is_none_or(|theirs| ours > theirs)
                    }),
                }
            }
        };
        round.writes.push(Write::Incident {
            key: key.clone(),
            delta: delta.clone(),
            mode,
        });
        round.owners.push(None);
    }
    Ok(round)
}

fn count(delta: &mut IncidentDelta, counted: Counted, at: Option<DateTime<Utc>>) {
    match counted {
        Counted::Event => delta.events += 1,
        Counted::Recovered => delta.recovered += 1,
    }
    if let Some(at) = at {
        widen(delta, at);
    }
}

fn widen(delta: &mut IncidentDelta, at: DateTime<Utc>) {
    delta.span = Some(match delta.span {
        Some((first, last)) => (first.min(at), last.max(at)),
        None => (at, at),
    });
}

/// Record the chunk's final round: each event's effect, and each incident as the commit left
/// it (`commit`: `None` when nothing needed writing).
fn finish(
    chunk: &[Unit],
    round: Round,
    incidents: &FxHashMap<IncidentKey, Option<StoredIncident>>,
    commit: Option<&Commit>,
    context: &WriteContext<'_>,
    written: &mut Written,
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
    // What the rounds learnt, for incidents the commit did not write.
    for (key, stored) in incidents {
        let after = written.incidents.entry(key.clone()).or_default();
        if !after.moved {
            after.known = match stored {
                Some(stored) => Known::Stored(stored.incident.clone()),
                None => Known::Absent,
            };
        }
    }
    for (key, _) in &round.deltas {
        written.incidents.entry(key.clone()).or_default();
    }
    let Some(commit) = commit else { return };
    for (key, delta, mode) in commit.incidents() {
        let after = written.incidents.entry(key.clone()).or_default();
        // An addition's base is what this chunk's rounds read (they chose the mode from it).
        let base = match mode {
            IncidentMode::Create { .. } => None,
            IncidentMode::Add { .. } => incidents
                .get(key)
                .and_then(|s| s.as_ref().map(|s| s.incident.clone())),
        };
        after.known = match base {
            Some(incident) => Known::Stored(delta.added_to(&incident, context.now)),
            None => Known::Stored(delta.opened(key, context.now)),
        };
        after.moved = true;
        if let IncidentMode::Create {
            first_page: Some(claim),
        } = mode
        {
            after.claim = Some(claim.clone());
        }
    }
}
