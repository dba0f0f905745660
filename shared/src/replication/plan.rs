//! One round of a chunk's commit, planned from what is known: each unit's events folded into
//! its stored record (or a new one), and the deltas they move on their incidents.

use super::write::{KeyOf, WriteContext};
use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::IncidentKey;
use crate::ledger::{
    membership, Counted, Effect, IncidentDelta, IncidentMode, LedgerError, ObjectRecord, PageClaim,
    StoredIncident, Write,
};
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use smallvec::{smallvec, SmallVec};
use std::borrow::Cow;
use std::sync::Arc;

/// A chunk's unit of writing: an object version with its events, or a not-tracked marker.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    /// Positions in the batch's events (nearly always one or two: no allocation).
    pub events: SmallVec<[usize; 2]>,
    /// What is stored, once a round learnt it: `Some(None)`, known absent.
    pub stored: Option<Option<(ObjectRecord, u64)>>,
    pub marker: bool,
    /// A marker found stored: its event was counted.
    pub marker_exists: bool,
    /// Set when the unit cannot be written (its incident is of the old layout).
    pub failed: Option<LedgerError>,
}

/// One round's plan for a chunk.
#[derive(Default)]
pub(super) struct Round<'k> {
    pub writes: Vec<Write>,
    /// Per write: the unit it belongs to (`None`: an incident write).
    pub owners: Vec<Option<usize>>,
    pub effects: Vec<(usize, Effect)>,
    pub deltas: Vec<(KeyOf<'k>, IncidentDelta)>,
}

/// Group the events by object version (in order) and give each not-tracked event its marker.
pub(super) fn units(events: &[(&ReplicationEvent, &IncidentKey)]) -> Vec<Unit> {
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
                    events: smallvec![position],
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

/// The round's writes from what is known: each unit's events folded into its stored record,
/// and the incidents' deltas. `Err`: a unit whose incident is of the old layout.
pub(super) fn plan<'k>(
    events: &[(&ReplicationEvent, &'k IncidentKey)],
    chunk: &[Unit],
    incidents: &FxHashMap<KeyOf<'k>, Option<StoredIncident>>,
    context: &WriteContext<'_>,
) -> Result<Round<'k>, (Vec<usize>, LedgerError)> {
    let mut round = Round::default();
    let mut delta_of: FxHashMap<KeyOf<'k>, usize> = FxHashMap::default();
    let mut touches: Vec<(usize, usize)> = Vec::new();
    let mut delta = |round: &mut Round<'k>, key: KeyOf<'k>, unit: usize| -> usize {
        // Most events of a batch share a few incidents, whose keys the events lend.
        let position = match delta_of.get(&*key) {
            Some(&position) => position,
            None => {
                delta_of.insert(key.clone(), round.deltas.len());
                round.deltas.push((key, IncidentDelta::default()));
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
                        changed: counted,
                    },
                ));
            }
            if new {
                let d = delta(&mut round, Cow::Borrowed(key), index);
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
                let d = delta(&mut round, Cow::Borrowed(key), index);
                let arrival = event.kind == ReplicationEventKind::OperationReplicatedAfterThreshold;
                let at = (effect.changed && !arrival).then_some(event.event_time);
                count(&mut round.deltas[d].1, counted, at);
            } else if effect.changed
                && event.kind != ReplicationEventKind::OperationReplicatedAfterThreshold
                && membership(event).is_some()
            {
                // Not new to its incident, but it moved the record (an earlier failure time,
                // say): the incident's span still widens.
                let d = delta(&mut round, Cow::Borrowed(key), index);
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
            before.and_then(ObjectRecord::backlog_of),
            record.backlog_of(),
        );
        if was != now {
            for (cause, step) in [(was, -1i64), (now, 1)] {
                if let Some(cause) = cause {
                    // Usually the incident of the unit's own event: no key to build.
                    let own = events[unit.events[0]].1;
                    let d = if cause.is(&own.cause)
                        && own.source_bucket == record.source_bucket
                        && own.rule_id == record.rule_id
                        && own.destination_bucket == record.destination_bucket
                    {
                        delta(&mut round, Cow::Borrowed(own), index)
                    } else {
                        delta(
                            &mut round,
                            Cow::Owned(record.incident(cause.to_cause())),
                            index,
                        )
                    };
                    round.deltas[d].1.backlog += step;
                }
            }
        }
        round.writes.push(Write::Object {
            expected: stored.as_ref().map(|(_, revision)| *revision),
            record: Arc::new(record),
        });
        round.owners.push(Some(index));
    }
    for (key, delta) in &round.deltas {
        if !delta.moves() {
            continue;
        }
        let mode = match incidents.get(&**key) {
            None | Some(None) => IncidentMode::Create {
                first_page: (delta.events > 0).then(|| PageClaim {
                    token: (context.claim_token)(),
                    at: context.now,
                    expected_pages_sent: 0,
                    lease: context.page_lease,
                }),
            },
            Some(Some(stored)) if !stored.migrated => {
                let position = delta_of.get(&**key).copied().unwrap_or_default();
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
            key: key.clone().into_owned(),
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
