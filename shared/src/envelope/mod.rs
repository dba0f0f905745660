//! The inbound envelope layer: how an invocation's payload arrived (directly, from SNS, from SQS,
//! whose body may itself be an SNS notification, or from EventBridge), split into [`Envelope`]s,
//! the unit that is retried, each with its body; and the response the delivery needs
//! ([`sqs_batch_response`], or a failed invocation). Features parse only bodies.
//!
//! `aws_lambda_events` types are used where they fit: [`SnsEvent`] reads SNS invocations,
//! [`EventBridgeEvent`] an EventBridge one (its header and detail), and [`SqsBatchResponse`] is
//! the SQS partial batch response. SQS invocations, a storm's hot path, are read by a borrowed
//! wire of the four fields used (message id, source, body, receive count): `aws_lambda_events`'
//! `SqsEvent` owns every field and fills two maps per record, 2.1 against 1.7 us per record
//! (`make bench`, BENCHMARKS.md), a fifth of the envelope and what kept the whole path under its
//! goal. A payload the one-pass readers refuse (a record with a field of the wrong type, an SNS
//! record missing a field) is read record by record with a lenient wire, so that each record's
//! error says what is wrong with it and the others are still processed.

use crate::event::is_json_object_text;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// How the invocation arrived; decides how failures are reported back to Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Invoked with the payload itself (S3, an alarm action, a schedule): a failure fails the
    /// invocation (Lambda retries it).
    Direct,
    /// SNS invoked the function: a failure fails the invocation (SNS retries it).
    Sns,
    /// An SQS event source mapping: failed messages go in `batchItemFailures`.
    Sqs,
    /// An EventBridge rule or schedule: a failure fails the invocation (EventBridge retries it).
    EventBridge,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Direct => "direct",
            Delivery::Sns => "sns",
            Delivery::Sqs => "sqs",
            Delivery::EventBridge => "eventbridge",
        }
    }
}

/// One retry unit: its id, whether SQS says it is new, and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// SQS `messageId` (what `batchItemFailures` names), SNS `MessageId`, the EventBridge event
    /// id, or `direct`.
    pub id: String,
    /// SQS says this is the message's first receive (`ApproximateReceiveCount` 1): no earlier
    /// attempt at it can have left work undone. `false` when unknown (SNS, direct, EventBridge).
    pub first_delivery: bool,
    /// The message's own JSON text: the SQS body, the SNS `Message`, the EventBridge `detail`,
    /// or the whole direct payload; or why the record has none.
    pub body: Result<String, String>,
    /// The EventBridge event's header, for an EventBridge delivery.
    pub event: Option<EventHeader>,
}

/// What an EventBridge event says besides its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    pub id: Option<String>,
    pub detail_type: String,
    pub source: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("payload is not an S3, SNS, SQS or EventBridge event: {0}")]
    Unrecognised(String),
}

/// The SQS partial batch response naming the messages to retry.
pub fn sqs_batch_response(failed: impl IntoIterator<Item = String>) -> serde_json::Value {
    let mut response = SqsBatchResponse::default();
    response.set_failures(failed);
    serde_json::to_value(&response).unwrap_or_else(|_| {
        // Serialising two plain strings cannot fail; if it ever did, failing every message
        // (an empty identifier fails the whole batch) loses nothing.
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": ""}]})
    })
}

/// The top level of any supported payload.
#[derive(Deserialize)]
struct PayloadWire<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "detail-type")]
    detail_type: Option<&'a RawValue>,
}

/// An SQS or SNS invocation read in one pass: every record an object.
#[derive(Deserialize)]
struct RecordsWire<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<ObjectOnly<RecordWire<'a>>>,
}

/// The parts of an SQS or SNS record read here (S3 records have neither). Borrowed where the
/// text allows: a storm's SQS batches are read field by field at this layer first.
#[derive(Deserialize)]
struct RecordWire<'a> {
    #[serde(rename = "eventSource", borrow)]
    sqs_source: Option<Cow<'a, str>>,
    #[serde(rename = "EventSource", borrow)]
    sns_source: Option<Cow<'a, str>>,
    #[serde(rename = "messageId", borrow)]
    message_id: Option<Cow<'a, str>>,
    body: Option<String>,
    #[serde(borrow)]
    attributes: Option<SqsAttributesWire<'a>>,
    #[serde(rename = "Sns")]
    sns: Option<SnsWire>,
}

#[derive(Deserialize)]
struct SqsAttributesWire<'a> {
    #[serde(rename = "ApproximateReceiveCount", borrow)]
    receive_count: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SnsWire {
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// `T` read only from a JSON object: serde's derived readers also fill a struct from an array
/// of its fields in order, which would make `[["aws:sqs"]]` an SQS record.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Fields(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

impl RecordWire<'_> {
    fn delivery(&self) -> Delivery {
        if self.sqs_source.as_deref() == Some("aws:sqs") {
            Delivery::Sqs
        } else if self.sns_source.as_deref() == Some("aws:sns") || self.sns.is_some() {
            Delivery::Sns
        } else {
            Delivery::Direct
        }
    }

    fn into_envelope(self, delivery: Delivery) -> Envelope {
        let (id, first_delivery, body) = match delivery {
            Delivery::Sqs => (
                self.message_id.map(Cow::into_owned),
                self.attributes
                    .and_then(|a| a.receive_count)
                    .is_some_and(|count| count == "1"),
                self.body
                    .ok_or_else(|| "SQS record has no string `body`".to_owned()),
            ),
            _ => match self.sns {
                Some(SnsWire {
                    message_id,
                    message,
                }) => (
                    message_id,
                    false,
                    message.ok_or_else(|| "SNS record has no string `Sns.Message`".to_owned()),
                ),
                None => (
                    None,
                    false,
                    Err("SNS record has no `Sns` object".to_owned()),
                ),
            },
        };
        Envelope {
            id: id.unwrap_or_default(),
            first_delivery,
            body,
            event: None,
        }
    }
}

/// Split an invocation payload (its JSON text) into its messages.
pub fn open(payload: &str) -> Result<(Delivery, Vec<Envelope>), EnvelopeError> {
    // `[[], null]` would read as an empty S3 event (tests/bad_input.rs).
    if !is_json_object_text(payload) {
        return Err(EnvelopeError::Unrecognised(
            "the payload is not a JSON object".into(),
        ));
    }
    // The common deliveries read in one pass (SQS by our wire, SNS by aws_lambda_events' type).
    // Anything they refuse (a field of the wrong type, say) takes the slower path below, which
    // reads record by record and says what is wrong with each.
    // (Which to try is guessed from the text: a wrong guess costs a pass, never a message.)
    if payload.contains("aws:sqs") {
        if let Ok(event) = serde_json::from_str::<RecordsWire<'_>>(payload) {
            if !event.records.is_empty()
                && event
                    .records
                    .iter()
                    .all(|r| r.0.delivery() == Delivery::Sqs)
            {
                return Ok((
                    Delivery::Sqs,
                    event
                        .records
                        .into_iter()
                        .map(|r| r.0.into_envelope(Delivery::Sqs))
                        .collect(),
                ));
            }
        }
    }
    if payload.contains("aws:sns") {
        if let Some(envelopes) = sns_event(payload) {
            return Ok((Delivery::Sns, envelopes));
        }
    }
    let wire: PayloadWire<'_> = serde_json::from_str(payload).map_err(|e| {
        EnvelopeError::Unrecognised(format!("not a JSON object of the expected shape: {e}"))
    })?;
    if wire.detail_type.is_some() && wire.records.is_none() {
        return eventbridge(payload).map(|envelope| (Delivery::EventBridge, vec![envelope]));
    }
    let direct = || {
        (
            Delivery::Direct,
            vec![Envelope {
                id: "direct".into(),
                first_delivery: false,
                body: Ok(payload.to_owned()),
                event: None,
            }],
        )
    };
    let Some(records) = wire.records else {
        // An alarm action, a schedule's input, an S3 test event: the feature reads it.
        return Ok(direct());
    };
    let Some(first) = records.first() else {
        // Nothing to do, and nothing lost.
        return Ok((Delivery::Direct, Vec::new()));
    };
    let first: RecordWire = serde_json::from_str(first.get())
        .map_err(|e| EnvelopeError::Unrecognised(format!("record 0: {e}")))?;
    let delivery = first.delivery();
    if delivery == Delivery::Direct {
        return Ok(direct());
    }
    let what = if delivery == Delivery::Sqs {
        "SQS"
    } else {
        "SNS"
    };
    Ok((
        delivery,
        records
            .iter()
            .map(|record| {
                // Only an object is a record: serde would read `[" "]` as one, positionally,
                // and take " " for its message id.
                let wire = if is_json_object_text(record.get()) {
                    serde_json::from_str::<RecordWire>(record.get()).map_err(|e| e.to_string())
                } else {
                    Err("not a JSON object".to_owned())
                };
                match wire {
                    Ok(wire) => wire.into_envelope(delivery),
                    Err(error) => Envelope {
                        id: String::new(),
                        first_delivery: false,
                        body: Err(format!("{what} record: {error}")),
                        event: None,
                    },
                }
            })
            .collect(),
    ))
}

/// A well-formed SNS invocation as `aws_lambda_events` reads it (`None`: it refuses it, or it
/// is no SNS event).
fn sns_event(payload: &str) -> Option<Vec<Envelope>> {
    let event: SnsEvent = serde_json::from_str(payload).ok()?;
    if event.records.is_empty() || event.records.iter().any(|r| r.event_source != "aws:sns") {
        return None;
    }
    Some(
        event
            .records
            .into_iter()
            .map(|record| Envelope {
                id: record.sns.message_id,
                first_delivery: false,
                body: Ok(record.sns.message),
                event: None,
            })
            .collect(),
    )
}

/// An EventBridge event: its detail is the body, its header beside it.
fn eventbridge(payload: &str) -> Result<Envelope, EnvelopeError> {
    let event: EventBridgeEvent<Box<RawValue>> = serde_json::from_str(payload)
        .map_err(|e| EnvelopeError::Unrecognised(format!("EventBridge event: {e}")))?;
    Ok(Envelope {
        id: event.id.clone().unwrap_or_default(),
        first_delivery: false,
        body: Ok(event.detail.get().to_owned()),
        event: Some(EventHeader {
            id: event.id,
            detail_type: event.detail_type,
            source: event.source,
            account: event.account,
            region: event.region,
            time: event.time,
            resources: event.resources.unwrap_or_default(),
        }),
    })
}

#[cfg(test)]
mod tests;
