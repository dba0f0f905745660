//! How S3 notifications reach the function: directly, inside SNS, or inside SQS (whose body may
//! itself be an SNS envelope). Each delivery is split into [`Message`]s, the unit that is retried.

use crate::event::{is_json_object_text, ParseError, S3Notification};
use serde::Deserialize;
use serde_json::value::RawValue;

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
    /// SQS says this is the message's first receive (`ApproximateReceiveCount` 1): no earlier
    /// attempt at it can have left work undone. `false` when unknown (SNS, direct, no count).
    pub first_delivery: bool,
    pub notification: Result<S3Notification, ParseError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("payload is not an S3, SNS or SQS event: {0}")]
    Unrecognised(String),
}

/// The top level of any supported payload.
#[derive(Deserialize)]
struct PayloadWire<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Event")]
    event: Option<&'a RawValue>,
}

/// The parts of an SQS or SNS record this function reads (S3 records have neither).
#[derive(Deserialize)]
struct RecordWire {
    #[serde(rename = "eventSource")]
    sqs_source: Option<String>,
    #[serde(rename = "EventSource")]
    sns_source: Option<String>,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    body: Option<String>,
    attributes: Option<SqsAttributesWire>,
    #[serde(rename = "Sns")]
    sns: Option<SnsWire>,
}

#[derive(Deserialize)]
struct SqsAttributesWire {
    #[serde(rename = "ApproximateReceiveCount")]
    receive_count: Option<String>,
}

#[derive(Deserialize)]
struct SnsWire {
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// Every record typed in one pass, for the fast path.
#[derive(Deserialize)]
struct FastPayloadWire<'a> {
    #[serde(rename = "Records")]
    records: Option<Vec<RecordWire>>,
    #[serde(rename = "Event", borrow)]
    event: Option<&'a RawValue>,
}

impl RecordWire {
    fn delivery(&self) -> Delivery {
        if self.sqs_source.as_deref() == Some("aws:sqs") {
            Delivery::Sqs
        } else if self.sns_source.as_deref() == Some("aws:sns") || self.sns.is_some() {
            Delivery::Sns
        } else {
            Delivery::Direct
        }
    }

    fn into_message(self, delivery: Delivery) -> Message {
        match delivery {
            Delivery::Sqs => match self.body {
                Some(body) => Message {
                    id: self.message_id.unwrap_or_default(),
                    first_delivery: self
                        .attributes
                        .and_then(|a| a.receive_count)
                        .is_some_and(|count| count == "1"),
                    notification: S3Notification::from_json(&body),
                },
                None => Message {
                    id: self.message_id.unwrap_or_default(),
                    first_delivery: false,
                    notification: Err(ParseError::InvalidJson(
                        "SQS record has no string `body`".into(),
                    )),
                },
            },
            _ => match self.sns {
                Some(SnsWire {
                    message_id,
                    message: Some(message),
                }) => Message {
                    id: message_id.unwrap_or_default(),
                    first_delivery: false,
                    notification: S3Notification::from_json(&message),
                },
                Some(SnsWire {
                    message_id,
                    message: None,
                }) => Message {
                    id: message_id.unwrap_or_default(),
                    first_delivery: false,
                    notification: Err(ParseError::InvalidJson(
                        "SNS record has no string `Sns.Message`".into(),
                    )),
                },
                None => Message {
                    id: String::new(),
                    first_delivery: false,
                    notification: Err(ParseError::InvalidJson(
                        "SNS record has no `Sns` object".into(),
                    )),
                },
            },
        }
    }
}

/// Split an invocation payload (its JSON text) into its messages.
pub fn open(payload: &str) -> Result<(Delivery, Vec<Message>), EnvelopeError> {
    // `[[], null]` would read as an empty S3 event (tests/bad_input.rs).
    if !is_json_object_text(payload) {
        return Err(EnvelopeError::Unrecognised(
            "the payload is not a JSON object".into(),
        ));
    }
    // Fast path: the whole SQS or SNS event typed in one pass. Direct S3 payloads and anything
    // the typed pass rejects take the slower path below, which reports problems per record.
    if let Ok(FastPayloadWire {
        records: Some(records),
        event: None,
    }) = serde_json::from_str(payload)
    {
        let delivery = records
            .first()
            .map_or(Delivery::Direct, RecordWire::delivery);
        if delivery != Delivery::Direct {
            return Ok((
                delivery,
                records
                    .into_iter()
                    .map(|r| r.into_message(delivery))
                    .collect(),
            ));
        }
    }
    let wire: PayloadWire<'_> = serde_json::from_str(payload).map_err(|e| {
        EnvelopeError::Unrecognised(format!("not a JSON object of the expected shape: {e}"))
    })?;
    let direct = || {
        (
            Delivery::Direct,
            vec![Message {
                id: "direct".into(),
                first_delivery: false,
                notification: S3Notification::from_json(payload),
            }],
        )
    };
    // An S3 test event can arrive bare (never from S3 directly, but people invoke with it).
    if wire.event.is_some() {
        return Ok(direct());
    }
    let records = wire
        .records
        .ok_or_else(|| EnvelopeError::Unrecognised("no `Records` array".into()))?;
    let Some(first) = records.first() else {
        // Nothing to do, and nothing lost.
        return Ok((Delivery::Direct, Vec::new()));
    };
    let first: RecordWire = serde_json::from_str(first.get())
        .map_err(|e| EnvelopeError::Unrecognised(format!("record 0: {e}")))?;
    if first.sqs_source.as_deref() == Some("aws:sqs") {
        return Ok((
            Delivery::Sqs,
            records.iter().map(|r| sqs_message(r.get())).collect(),
        ));
    }
    if first.sns_source.as_deref() == Some("aws:sns") || first.sns.is_some() {
        return Ok((
            Delivery::Sns,
            records.iter().map(|r| sns_message(r.get())).collect(),
        ));
    }
    Ok(direct())
}

fn sqs_message(record: &str) -> Message {
    match serde_json::from_str::<RecordWire>(record) {
        Ok(wire) => wire.into_message(Delivery::Sqs),
        Err(error) => Message {
            id: String::new(),
            first_delivery: false,
            notification: Err(ParseError::InvalidJson(format!("SQS record: {error}"))),
        },
    }
}

fn sns_message(record: &str) -> Message {
    match serde_json::from_str::<RecordWire>(record) {
        Ok(wire) => wire.into_message(Delivery::Sns),
        Err(error) => Message {
            id: String::new(),
            first_delivery: false,
            notification: Err(ParseError::InvalidJson(format!("SNS record: {error}"))),
        },
    }
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
        let (delivery, messages) = open(&payload.to_string()).unwrap();
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
        let (delivery, messages) = open(&payload.to_string()).unwrap();
        assert_eq!(delivery, Delivery::Sns);
        assert_eq!(messages[0].id, "x");
        let direct: serde_json::Value = serde_json::from_str(S3).unwrap();
        let (delivery, messages) = open(&direct.to_string()).unwrap();
        assert_eq!(delivery, Delivery::Direct);
        assert_eq!(messages.len(), 1);
    }

    #[test]
    fn unrecognised_payloads() {
        assert!(open(&json!({"hello": 1}).to_string()).is_err());
        assert!(open("[1, 2]").is_err());
        assert!(open("{\"Records\": [").is_err());
        assert!(open(&json!({"Records": []}).to_string())
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
        if let Ok((_, messages)) = open(payload) {
            for message in messages {
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
