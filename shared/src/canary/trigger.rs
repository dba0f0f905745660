//! What starts a canary run: an EventBridge schedule's event, or a Scheduler input.

use super::CanaryError;
use crate::envelope::{self, Delivery};
use serde::Deserialize;

/// What started the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Unique per scheduled run and the same on redelivery.
    pub run_id: String,
    /// Buckets named in a Scheduler input, instead of the configured list.
    pub buckets: Option<Vec<String>>,
}

/// A Scheduler input (or an EventBridge event's detail): both fields optional.
#[derive(Deserialize, Default)]
struct TriggerInput {
    run_id: Option<String>,
    buckets: Option<Vec<String>>,
}

impl Trigger {
    /// An EventBridge "Scheduled Event" (run ID: the event ID), or an EventBridge Scheduler
    /// input such as `{"run_id": "<aws.scheduler.execution-id>", "buckets": [...]}` (both
    /// optional; without a run ID, the Lambda request ID, which Lambda keeps on its retries).
    /// The envelope ([`crate::envelope`]) says which it is.
    pub fn parse(payload: &str, request_id: &str) -> Result<Trigger, CanaryError> {
        // `[null, null, "run", ["bucket"]]` would read as a trigger (tests/bad_input.rs).
        if !crate::event::is_json_object_text(payload) {
            return Err(CanaryError::BadTrigger(
                match payload.trim_start().chars().next() {
                    Some(first) => format!("it starts with {first:?}, not '{{'"),
                    None => "it is empty".to_owned(),
                },
            ));
        }
        let (delivery, mut envelopes) =
            envelope::open(payload).map_err(|e| CanaryError::BadTrigger(e.to_string()))?;
        // An EventBridge event: its header names the run, its detail may name the buckets.
        // Anything else is a Scheduler input, read whole (whatever else it holds is ignored).
        let (input, header) = match (delivery, envelopes.pop()) {
            (Delivery::EventBridge, Some(envelope)) => {
                let detail = envelope.body.map_err(CanaryError::BadTrigger)?;
                // A schedule's detail is `{}`; only an object can name buckets.
                let input: TriggerInput = if crate::event::is_json_object_text(&detail) {
                    serde_json::from_str(&detail)
                        .map_err(|e| CanaryError::BadTrigger(format!("detail: {e}")))?
                } else {
                    TriggerInput::default()
                };
                (input, envelope.event)
            }
            _ => (
                serde_json::from_str::<TriggerInput>(payload)
                    .map_err(|e| CanaryError::BadTrigger(e.to_string()))?,
                None,
            ),
        };
        let scheduled = header
            .as_ref()
            .is_some_and(|header| header.detail_type == "Scheduled Event");
        let run_id = if scheduled {
            header.and_then(|h| h.id)
        } else {
            input.run_id
        }
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| request_id.to_owned());
        let buckets = input
            .buckets
            .map(|list| {
                list.into_iter()
                    .map(|b| b.trim().to_owned())
                    .filter(|b| !b.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|list| !list.is_empty());
        Ok(Trigger { run_id, buckets })
    }
}
