//! A replication message: an envelope ([`crate::envelope`]) whose body is an S3 notification.

use crate::envelope::{self, Delivery, EnvelopeError};
use crate::event::{ParseError, S3Notification};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One retry unit with its notification, or the reason it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// SQS `messageId` (what `batchItemFailures` names), SNS `MessageId`, or `direct`.
    pub id: String,
    /// SQS says this is the message's first receive (`ApproximateReceiveCount` 1): no earlier
    /// attempt at it can have left work undone. `false` when unknown (SNS, direct, no count).
    pub first_delivery: bool,
    pub notification: Result<S3Notification, ParseError>,
}

/// What a direct payload must have to be an S3 notification (or S3's test event).
#[derive(Deserialize)]
struct DirectWire<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<&'a RawValue>,
    #[serde(rename = "Event", borrow)]
    event: Option<&'a RawValue>,
}

/// Split an invocation payload into its messages and read each body as an S3 notification.
pub fn messages(payload: &str) -> Result<(Delivery, Vec<Message>), EnvelopeError> {
    let (delivery, envelopes) = envelope::open(payload)?;
    // A direct payload read by the fast path has its `Records`: the shape check below, a
    // second pass over the whole payload, is for the others.
    let mut direct = None;
    if delivery == Delivery::Direct && envelopes.len() == 1 {
        if let Some(Ok(body)) = envelopes.first().map(|e| &e.body) {
            direct = S3Notification::well_formed_records(body);
        }
    }
    match delivery {
        Delivery::EventBridge => {
            return Err(EnvelopeError::Unrecognised(
                "an EventBridge event; S3 replication events come directly, through SNS or SQS"
                    .into(),
            ))
        }
        Delivery::Direct if !envelopes.is_empty() && direct.is_none() => {
            let shape: DirectWire<'_> = serde_json::from_str(payload).map_err(|e| {
                EnvelopeError::Unrecognised(format!("not a JSON object of the expected shape: {e}"))
            })?;
            if shape.records.is_none() && shape.event.is_none() {
                return Err(EnvelopeError::Unrecognised("no `Records` array".into()));
            }
        }
        _ => {}
    }
    Ok((
        delivery,
        envelopes
            .into_iter()
            .map(|envelope| Message {
                id: envelope.id,
                first_delivery: envelope.first_delivery,
                notification: match direct.take() {
                    Some(notification) => Ok(notification),
                    None => envelope
                        .body
                        .map_err(ParseError::InvalidJson)
                        .and_then(|body| S3Notification::from_json(&body)),
                },
            })
            .collect(),
    ))
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
        let (delivery, opened) = messages(&payload.to_string()).unwrap();
        assert_eq!(delivery, Delivery::Sqs);
        assert!(opened[0].notification.is_ok());
        assert!(opened[1].notification.is_ok());
        assert!(matches!(
            opened[2].notification,
            Err(ParseError::InvalidJson(_))
        ));
        assert_eq!(opened[2].id, "3");
    }

    #[test]
    fn sns_and_direct() {
        let payload = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "x", "Message": S3}}]});
        let (delivery, opened) = messages(&payload.to_string()).unwrap();
        assert_eq!(delivery, Delivery::Sns);
        assert_eq!(opened[0].id, "x");
        let direct: serde_json::Value = serde_json::from_str(S3).unwrap();
        let (delivery, opened) = messages(&direct.to_string()).unwrap();
        assert_eq!(delivery, Delivery::Direct);
        assert_eq!(opened.len(), 1);
    }

    #[test]
    fn unrecognised_payloads() {
        assert!(messages(&json!({"hello": 1}).to_string()).is_err());
        assert!(messages("[1, 2]").is_err());
        assert!(messages("{\"Records\": [").is_err());
        let eventbridge =
            json!({"detail-type": "Object Created", "source": "aws.s3", "detail": {}});
        assert!(messages(&eventbridge.to_string()).is_err());
        assert!(messages(&json!({"Records": []}).to_string())
            .unwrap()
            .1
            .is_empty());
    }
}

#[cfg(test)]
mod robustness {
    //! Bad input never panics: arbitrary text, and real payloads cut or corrupted at random.
    use super::*;
    use proptest::prelude::*;

    const SQS: &str = include_str!("../../../events/sqs/storm-batch.json");
    const SNS: &str = include_str!("../../../events/sns/failed.json");
    const DIRECT: &str = include_str!("../../../events/direct/missed-threshold.json");

    fn exercise(payload: &str) {
        if let Ok((_, opened)) = messages(payload) {
            for message in opened {
                if let Err(error) = message.notification {
                    assert!(!error.to_string().is_empty());
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text(text in ".{0,400}") {
            exercise(&text);
        }

        #[test]
        fn truncated_real_payloads(which in 0usize..3, cut in 0.0f64..1.0) {
            let payload = [SQS, SNS, DIRECT][which];
            let mut end = (payload.len() as f64 * cut) as usize;
            while !payload.is_char_boundary(end) {
                end -= 1;
            }
            exercise(&payload[..end]);
        }

        #[test]
        fn corrupted_real_payloads(which in 0usize..3, at in 0.0f64..1.0, byte in 0u8..128) {
            let mut bytes = [SQS, SNS, DIRECT][which].as_bytes().to_vec();
            let index = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[index] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                exercise(&text);
            }
        }
    }
}
