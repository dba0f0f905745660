//! One invocation's work per incident: which messages depend on it, whether one of them was
//! delivered before, and the sample keys its page lists.

use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::{IncidentKey, SampleObject};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;

/// Events of one incident within one invocation.
#[derive(Debug, Default)]
pub(super) struct IncidentBatch<'k> {
    /// Events of the incident that may page (not the arrivals of late objects).
    pub paging_events: usize,
    /// Some of its messages were delivered before (or may have been): an earlier attempt may
    /// have left a page owed, so the incident is looked at even if nothing new was counted.
    pub redelivered: bool,
    /// Key and version of the first objects, lent by the events (copied only for a page).
    pub samples: BTreeSet<(&'k str, Option<&'k str>)>,
    /// Messages that fail if this incident's page fails, in order, each once.
    pub messages: Vec<usize>,
}

impl IncidentBatch<'_> {
    /// The objects a page lists.
    pub fn sample_objects(&self) -> Vec<SampleObject> {
        self.samples
            .iter()
            .map(|(key, version)| SampleObject {
                key: (*key).to_owned(),
                version_id: version.map(str::to_owned),
            })
            .collect()
    }
}

/// The invocation's incidents.
#[derive(Debug, Default)]
pub(super) struct BatchPlan<'k> {
    pub incidents: Vec<(&'k IncidentKey, IncidentBatch<'k>)>,
    index: FxHashMap<&'k IncidentKey, usize>,
}

impl<'k> BatchPlan<'k> {
    /// Fold in one written event of message `index` (`first_delivery`: SQS says so).
    pub fn add(
        &mut self,
        index: usize,
        first_delivery: bool,
        event: &'k ReplicationEvent,
        key: &'k IncidentKey,
        sample_keys: usize,
    ) {
        let position = self.position(key);
        let batch = &mut self.incidents[position].1;
        // Events come message by message.
        if batch.messages.last() != Some(&index) {
            batch.messages.push(index);
        }
        batch.redelivered |= !first_delivery;
        // Arrivals of late objects only move counts; they never page.
        if event.kind != ReplicationEventKind::OperationReplicatedAfterThreshold {
            batch.paging_events += 1;
            keep_sample(&mut batch.samples, event, sample_keys);
        }
    }

    /// Where the incident's batch is (the key is the invocation's, lent).
    fn position(&mut self, key: &'k IncidentKey) -> usize {
        *self.index.entry(key).or_insert_with(|| {
            self.incidents.push((key, IncidentBatch::default()));
            self.incidents.len() - 1
        })
    }
}

/// Keep the first keys in order.
fn keep_sample<'k>(
    samples: &mut BTreeSet<(&'k str, Option<&'k str>)>,
    event: &'k ReplicationEvent,
    limit: usize,
) {
    let full = samples.len() >= limit;
    if !full
        || samples
            .last()
            .is_some_and(|last| event.key.as_str() < last.0)
    {
        samples.insert((event.key.as_str(), event.version_id.as_deref()));
        if samples.len() > limit {
            samples.pop_last();
        }
    }
}
