//! One invocation's work per incident: what its events' writes moved in each incident's counts,
//! which messages depend on it, the sample keys its page lists, and the writes to take back if
//! its counts cannot be updated.

use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::{IncidentKey, SampleObject};
use crate::ledger::{membership, Counted, IncidentDelta, Recorded, Undo};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;

/// Events of one incident within one invocation.
#[derive(Debug, Default)]
pub(super) struct IncidentBatch {
    pub delta: IncidentDelta,
    /// Events of the incident that may page (not the arrivals of late objects).
    pub paging_events: usize,
    /// Some of its messages were delivered before (or may have been): an earlier attempt may
    /// have left a page owed, so the incident is read even if nothing new was counted.
    pub redelivered: bool,
    pub samples: BTreeSet<SampleObject>,
    /// Messages that fail if this incident's counts or page fail.
    pub messages: BTreeSet<usize>,
    /// What redelivered duplicates show counted in their objects (memberships, backlog): if
    /// the incident does not exist, the attempt that wrote them died before counting them.
    pub replay: IncidentDelta,
    replayed: BTreeSet<(String, Option<String>)>,
}

impl IncidentBatch {
    /// Whether the incident's counters must move.
    pub fn moves_counts(&self) -> bool {
        let d = &self.delta;
        d.events > 0 || d.recovered > 0 || d.backlog != 0 || d.span.is_some()
    }
}

/// The invocation's incidents and the writes that moved them.
#[derive(Debug, Default)]
pub(super) struct BatchPlan {
    pub incidents: Vec<(IncidentKey, IncidentBatch)>,
    index: FxHashMap<IncidentKey, usize>,
    /// Each write that changed something, with the incidents (positions in `incidents`) whose
    /// counts it moved.
    writes: Vec<(Undo, Vec<usize>)>,
}

impl BatchPlan {
    /// Fold in one recorded event of message `index` (`first_delivery`: SQS says so).
    pub fn add(
        &mut self,
        index: usize,
        first_delivery: bool,
        event: &ReplicationEvent,
        key: &IncidentKey,
        recorded: Recorded,
        sample_keys: usize,
    ) {
        let Recorded {
            effect,
            record,
            undo,
        } = recorded;
        let mut touched: Vec<usize> = Vec::new();
        let position = self.position(key);
        let batch = &mut self.incidents[position].1;
        batch.messages.insert(index);
        batch.redelivered |= !first_delivery;
        match effect.counted {
            Some(Counted::Event) => batch.delta.events += 1,
            Some(Counted::Recovered) => batch.delta.recovered += 1,
            None => {}
        }
        if effect.counted.is_some() {
            touched.push(position);
        }
        // Arrivals of late objects only move counts; they never page.
        if event.kind != ReplicationEventKind::OperationReplicatedAfterThreshold {
            batch.paging_events += 1;
            if effect.changed {
                let at = event.event_time;
                batch.delta.span = Some(match batch.delta.span {
                    Some((first, last)) => (first.min(at), last.max(at)),
                    None => (at, at),
                });
            }
            keep_sample(&mut batch.samples, event, sample_keys);
        }
        if !first_delivery && effect.counted.is_none() && !effect.changed {
            if let (Some(record), Some((token, counted))) = (&record, membership(event)) {
                let object = (record.key.clone(), record.version_id.clone());
                if record.counted_in.contains(&token) && !batch.replayed.contains(&object) {
                    match counted {
                        Counted::Event => batch.replay.events += 1,
                        Counted::Recovered => batch.replay.recovered += 1,
                    }
                    if record
                        .backlog_cause()
                        .is_some_and(|c| &record.incident(c) == key)
                    {
                        batch.replay.backlog += 1;
                    }
                    let at = event.event_time;
                    batch.replay.span = Some(match batch.replay.span {
                        Some((first, last)) => (first.min(at), last.max(at)),
                        None => (at, at),
                    });
                    batch.replayed.insert(object);
                }
            }
        }
        if let (Some(record), (before, after)) = (&record, &effect.backlog) {
            if before != after {
                for (cause, step) in [(before, -1i64), (after, 1)] {
                    if let Some(cause) = cause {
                        let moved = self.position(&record.incident(cause.clone()));
                        let batch = &mut self.incidents[moved].1;
                        batch.delta.backlog += step;
                        batch.messages.insert(index);
                        touched.push(moved);
                    }
                }
            }
        }
        if effect.changed && undo != Undo::Nothing {
            self.writes.push((undo, touched));
        }
    }

    /// Where the incident's batch is; the key is cloned only for an incident new to the
    /// invocation.
    fn position(&mut self, key: &IncidentKey) -> usize {
        if let Some(&position) = self.index.get(key) {
            return position;
        }
        self.incidents.push((key.clone(), IncidentBatch::default()));
        self.index.insert(key.clone(), self.incidents.len() - 1);
        self.incidents.len() - 1
    }

    /// The writes to take back when the counts of the incidents at these positions could not be
    /// moved: those whose every moved incident failed (a write that also moved a count that did
    /// go through stays, or its retry would count that one twice).
    pub fn undos_for(&self, failed: &BTreeSet<usize>) -> Vec<&Undo> {
        self.writes
            .iter()
            .filter(|(_, touched)| {
                !touched.is_empty() && touched.iter().all(|p| failed.contains(p))
            })
            .map(|(undo, _)| undo)
            .collect()
    }
}

/// Keep the first keys in order; clone only what may be kept.
fn keep_sample(samples: &mut BTreeSet<SampleObject>, event: &ReplicationEvent, limit: usize) {
    let full = samples.len() >= limit;
    if !full || samples.last().is_some_and(|last| event.key < last.key) {
        samples.insert(SampleObject {
            key: event.key.clone(),
            version_id: event.version_id.clone(),
        });
        if samples.len() > limit {
            samples.pop_last();
        }
    }
}
