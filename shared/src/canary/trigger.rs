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
        check_run_id(&run_id)?;
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

/// A run ID names the probes' keys: one made only of dots and slashes (`..`, `/`), or holding
/// control characters, or longer than a key part, would make keys that tools misread.
fn check_run_id(run_id: &str) -> Result<(), CanaryError> {
    let refuse = |why: &str| {
        Err(CanaryError::BadTrigger(format!(
            "run_id {:?} {why}",
            crate::delivery::text::untrusted_brief(run_id, 80)
        )))
    };
    if run_id.chars().count() > 200 {
        return refuse("is longer than 200 characters");
    }
    if run_id.chars().any(crate::delivery::text::is_hidden) {
        return refuse("holds control or invisible characters");
    }
    if !run_id.chars().any(|c| c.is_ascii_alphanumeric()) {
        return refuse("has no letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_that_would_make_unusual_keys_are_refused() {
        for bad in [
            "..",
            "/",
            "./..",
            " . ",
            "run\n1",
            "r\u{202e}",
            &"r".repeat(201),
        ] {
            let payload = serde_json::json!({ "run_id": bad }).to_string();
            let error = Trigger::parse(&payload, "request").unwrap_err();
            assert!(error.to_string().contains("run_id"), "{error}");
        }
        for good in ["2026-12-01T03:00:00Z", "run-1", "a/../b"] {
            let payload = serde_json::json!({ "run_id": good }).to_string();
            assert_eq!(Trigger::parse(&payload, "request").unwrap().run_id, good);
        }
    }
}
