//! What wakes the redrive function: a Batch Operations job status event (EventBridge, via
//! CloudTrail: `JobStatusChanged`, `JobCreated`), or its schedule (the sweep of open re-drives,
//! for events that never arrive, and, in automatic mode, the re-drives the canary handed over).

use crate::envelope::{self, Delivery};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A job's status changed (its id).
    JobEvent {
        job_id: String,
        status: Option<String>,
    },
    /// Look at every open re-drive (and what the canary handed over).
    Sweep,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a redrive trigger: {0}")]
pub struct BadTrigger(pub String);

#[derive(Deserialize)]
struct CloudTrailDetail {
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    #[serde(rename = "serviceEventDetails")]
    details: Option<ServiceEventDetails>,
}

#[derive(Deserialize)]
struct ServiceEventDetails {
    #[serde(rename = "jobId")]
    job_id: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize, Default)]
struct DirectInput {
    action: Option<String>,
    job_id: Option<String>,
}

impl Trigger {
    pub fn parse(payload: &str) -> Result<Trigger, BadTrigger> {
        let (delivery, mut envelopes) =
            envelope::open(payload).map_err(|e| BadTrigger(e.to_string()))?;
        let Some(envelope) = envelopes.pop() else {
            return Err(BadTrigger("an event with no records".into()));
        };
        let body = envelope.body.map_err(BadTrigger)?;
        match (delivery, envelope.event) {
            (Delivery::EventBridge, Some(header)) if header.detail_type == "Scheduled Event" => {
                Ok(Trigger::Sweep)
            }
            (Delivery::EventBridge, Some(header)) => {
                let detail: CloudTrailDetail = serde_json::from_str(&body)
                    .map_err(|e| BadTrigger(format!("{}: detail: {e}", header.detail_type)))?;
                let ours = header.source == "aws.s3"
                    && detail.event_source.as_deref() == Some("s3.amazonaws.com")
                    && matches!(
                        detail.event_name.as_deref(),
                        Some("JobStatusChanged" | "JobCreated")
                    );
                if !ours {
                    return Err(BadTrigger(format!(
                        "an EventBridge event from {} ({}), not an S3 Batch Operations job event",
                        crate::delivery::text::untrusted_brief(&header.source, 80),
                        crate::delivery::text::untrusted_brief(&header.detail_type, 80)
                    )));
                }
                let details = detail
                    .details
                    .ok_or_else(|| BadTrigger("no serviceEventDetails".into()))?;
                let job_id = details
                    .job_id
                    .filter(|id| valid_job_id(id))
                    .ok_or_else(|| BadTrigger("no valid serviceEventDetails.jobId".into()))?;
                Ok(Trigger::JobEvent {
                    job_id,
                    status: details.status,
                })
            }
            // `{"action": "sweep"}` or `{"job_id": "..."}`, invoked by hand or by a test.
            (Delivery::Direct, _) => {
                let input: DirectInput =
                    serde_json::from_str(&body).map_err(|e| BadTrigger(e.to_string()))?;
                match (input.action.as_deref(), input.job_id) {
                    (_, Some(job_id)) if valid_job_id(&job_id) => Ok(Trigger::JobEvent {
                        job_id,
                        status: None,
                    }),
                    (Some("sweep") | None, None) => Ok(Trigger::Sweep),
                    _ => Err(BadTrigger(
                        "expected {\"action\": \"sweep\"} or {\"job_id\": \"...\"}".into(),
                    )),
                }
            }
            (other, _) => Err(BadTrigger(format!(
                "a {} delivery; the redrive function takes EventBridge events",
                other.as_str()
            ))),
        }
    }
}

/// Job ids are UUIDs; anything else is refused before it reaches a query or a log line.
fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_events_schedules_and_direct_input() {
        let event = json!({"version": "0", "id": "e1", "detail-type": "AWS Service Event via CloudTrail",
            "source": "aws.s3", "account": "123456789012", "time": "2026-12-07T10:00:00Z",
            "region": "us-east-1", "resources": [],
            "detail": {"eventSource": "s3.amazonaws.com", "eventName": "JobStatusChanged",
                "serviceEventDetails": {"jobId": "a1b2-c3", "status": "Complete", "failureCodes": []}}});
        assert_eq!(
            Trigger::parse(&event.to_string()).unwrap(),
            Trigger::JobEvent {
                job_id: "a1b2-c3".into(),
                status: Some("Complete".into())
            }
        );
        let schedule = json!({"version": "0", "id": "e2", "detail-type": "Scheduled Event",
            "source": "aws.events", "detail": {}});
        assert_eq!(
            Trigger::parse(&schedule.to_string()).unwrap(),
            Trigger::Sweep
        );
        assert_eq!(
            Trigger::parse(r#"{"action":"sweep"}"#).unwrap(),
            Trigger::Sweep
        );
        assert_eq!(
            Trigger::parse(r#"{"job_id":"j-1"}"#).unwrap(),
            Trigger::JobEvent {
                job_id: "j-1".into(),
                status: None
            }
        );
    }

    #[test]
    fn other_events_and_odd_ids_are_refused() {
        let mut event = json!({"version": "0", "id": "e1", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.s3", "detail": {"eventSource": "s3.amazonaws.com", "eventName": "PutObject"}});
        assert!(Trigger::parse(&event.to_string()).is_err());
        event["detail"] = json!({"eventSource": "s3.amazonaws.com", "eventName": "JobStatusChanged",
            "serviceEventDetails": {"jobId": "a#b\n"}});
        assert!(Trigger::parse(&event.to_string()).is_err());
        assert!(Trigger::parse(r#"{"action":"delete"}"#).is_err());
        assert!(Trigger::parse("[]").is_err());
    }
}
