//! How S3 notifications reach the function: directly, inside SNS, or inside SQS (whose body may
//! itself be an SNS envelope). Each delivery is split into [`Message`]s, the unit that is retried.

use crate::event::{ParseError, S3Notification};
use serde_json::Value;

/// How the invocation arrived; decides how failures are reported back to Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// S3 invoked the function itself: a failure fails the invocation (Lambda retries it).
    Direct,
    /// SNS invoked the function: a failure fails the invocation (SNS retries it).
    Sns,
    /// An SQS event source mapping: failed messages go in `batchItemFailures`.
    Sqs,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Direct => "direct",
            Delivery::Sns => "sns",
            Delivery::Sqs => "sqs",
        }
    }
}

/// One retry unit with its notification, or the reason it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// SQS `messageId` (what `batchItemFailures` names), SNS `MessageId`, or `direct`.
    pub id: String,
    pub notification: Result<S3Notification, ParseError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("payload is not an S3, SNS or SQS event: {0}")]
    Unrecognised(String),
}

/// Split an invocation payload into its messages.
pub fn open(payload: &Value) -> Result<(Delivery, Vec<Message>), EnvelopeError> {
    // An S3 test event can arrive bare (never from S3 directly, but people invoke with it).
    if payload.get("Event").is_some() {
        return Ok((
            Delivery::Direct,
            vec![Message {
                id: "direct".into(),
                notification: S3Notification::from_value(payload),
            }],
        ));
    }
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| EnvelopeError::Unrecognised("no `Records` array".into()))?;
    let Some(first) = records.first() else {
        // Nothing to do, and nothing lost.
        return Ok((Delivery::Direct, Vec::new()));
    };
    if first.get("eventSource").and_then(Value::as_str) == Some("aws:sqs") {
        return Ok((Delivery::Sqs, records.iter().map(sqs_message).collect()));
    }
    if first.get("EventSource").and_then(Value::as_str) == Some("aws:sns")
        || first.get("Sns").is_some()
    {
        return Ok((Delivery::Sns, records.iter().map(sns_message).collect()));
    }
    Ok((
        Delivery::Direct,
        vec![Message {
            id: "direct".into(),
            notification: S3Notification::from_value(payload),
        }],
    ))
}

fn sqs_message(record: &Value) -> Message {
    let id = record
        .get("messageId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let notification = match record.get("body").and_then(Value::as_str) {
        Some(body) => parse_body(body),
        None => Err(ParseError::InvalidJson(
            "SQS record has no string `body`".into(),
        )),
    };
    Message { id, notification }
}

fn sns_message(record: &Value) -> Message {
    let sns = record.get("Sns");
    let id = sns
        .and_then(|s| s.get("MessageId"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let notification = match sns.and_then(|s| s.get("Message")).and_then(Value::as_str) {
        Some(message) => S3Notification::from_json(message),
        None => Err(ParseError::InvalidJson(
            "SNS record has no string `Sns.Message`".into(),
        )),
    };
    Message { id, notification }
}

/// An SQS body holds the S3 JSON, or an SNS envelope (topic -> queue without raw delivery).
fn parse_body(body: &str) -> Result<S3Notification, ParseError> {
    S3Notification::from_json(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S3: &str = r#"{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"2026-11-23T03:00:00Z","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#;

    #[test]
    fn sqs_with_plain_and_sns_bodies_and_garbage() {
        let sns_body = json!({"Type": "Notification", "MessageId": "m", "Message": S3}).to_string();
        let payload = json!({"Records": [
            {"messageId": "1", "eventSource": "aws:sqs", "body": S3},
            {"messageId": "2", "eventSource": "aws:sqs", "body": sns_body},
            {"messageId": "3", "eventSource": "aws:sqs", "body": "{\"Records\": ["},
        ]});
        let (delivery, messages) = open(&payload).unwrap();
        assert_eq!(delivery, Delivery::Sqs);
        assert!(messages[0].notification.is_ok());
        assert!(messages[1].notification.is_ok());
        assert!(matches!(
            messages[2].notification,
            Err(ParseError::InvalidJson(_))
        ));
        assert_eq!(messages[2].id, "3");
    }

    #[test]
    fn sns_and_direct() {
        let payload = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "x", "Message": S3}}]});
        let (delivery, messages) = open(&payload).unwrap();
        assert_eq!(delivery, Delivery::Sns);
        assert_eq!(messages[0].id, "x");
        let direct: Value = serde_json::from_str(S3).unwrap();
        let (delivery, messages) = open(&direct).unwrap();
        assert_eq!(delivery, Delivery::Direct);
        assert_eq!(messages.len(), 1);
    }

    #[test]
    fn unrecognised_payloads() {
        assert!(open(&json!({"hello": 1})).is_err());
        assert!(open(&json!([1, 2])).is_err());
        assert!(open(&json!({"Records": []})).unwrap().1.is_empty());
    }
}
