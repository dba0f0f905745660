//! What one process remembers of the incidents it counted into.

use crate::incident::{Incident, IncidentKey};
use rustc_hash::FxHashMap;
use std::sync::Mutex;

/// Incidents this process saw stored with counters, as last seen: a batch of a storm adds to
/// its incident in one commit instead of first trying to create it. Only a guess: a stale entry
/// makes a commit's condition fail (the incident expired, the span moved), whose cancellation
/// answers the stored incident, and a page decision made from it is checked by the claim's
/// condition (`pages_sent`), so a stale entry costs a round or a claim, never a count or a page.
#[derive(Debug, Default)]
pub(super) struct KnownIncidents(Mutex<FxHashMap<IncidentKey, Incident>>);

/// At most this many incidents are remembered per process (then it starts over).
const KNOWN_INCIDENTS: usize = 10_000;

impl KnownIncidents {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<IncidentKey, Incident>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &IncidentKey) -> Option<Incident> {
        self.lock().get(key).cloned()
    }

    /// Remember the incident as it now stands (`None`: forget it).
    pub fn learn(&self, key: &IncidentKey, incident: Option<&Incident>) {
        let mut known = self.lock();
        match incident {
            // Every batch learns each incident it touched: an incident already remembered is
            // updated in place, without cloning its key again.
            Some(incident) => match known.get_mut(key) {
                Some(remembered) => remembered.update_from(incident),
                None => {
                    if known.len() >= KNOWN_INCIDENTS {
                        known.clear();
                    }
                    known.insert(key.clone(), incident.clone());
                }
            },
            None => {
                known.remove(key);
            }
        }
    }
}
