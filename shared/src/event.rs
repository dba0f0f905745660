//! S3 event notifications that carry replication events, parsed into domain types.
//!
//! `aws_lambda_events` drops `replicationEventData`, so the wire shapes are our own. Parsing is
//! per record: one bad record yields a [`ParseError`] naming the record and the field, never a panic.

use crate::names;
use chrono::{DateTime, SubsecRound, Utc};
use percent_encoding::percent_decode_str;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// The four replication event types S3 emits (`eventName` is `Replication:<type>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReplicationEventKind {
    /// The object will not be replicated; S3 does not retry it.
    OperationFailedReplication,
    /// Replication Time Control threshold (15 minutes) passed and the object is not there yet.
    OperationMissedThreshold,
    /// An object that missed the threshold has now replicated.
    OperationReplicatedAfterThreshold,
    /// The object is not tracked by Replication Time Control metrics.
    OperationNotTracked,
}

impl ReplicationEventKind {
    pub fn from_event_name(name: &str) -> Option<Self> {
        // S3 writes `Replication:OperationFailedReplication`; the configuration uses the `s3:` prefix.
        let short = name.strip_prefix("s3:").unwrap_or(name);
        match short.strip_prefix("Replication:")? {
            "OperationFailedReplication" => Some(Self::OperationFailedReplication),
            "OperationMissedThreshold" => Some(Self::OperationMissedThreshold),
            "OperationReplicatedAfterThreshold" => Some(Self::OperationReplicatedAfterThreshold),
            "OperationNotTracked" => Some(Self::OperationNotTracked),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperationFailedReplication => "OperationFailedReplication",
            Self::OperationMissedThreshold => "OperationMissedThreshold",
            Self::OperationReplicatedAfterThreshold => "OperationReplicatedAfterThreshold",
            Self::OperationNotTracked => "OperationNotTracked",
        }
    }
}

impl fmt::Display for ReplicationEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replication event about one object version and one destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationEvent {
    pub kind: ReplicationEventKind,
    pub region: Option<String>,
    pub event_time: DateTime<Utc>,
    pub source_bucket: String,
    /// URL-decoded object key.
    pub key: String,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    pub sequencer: Option<String>,
    pub rule_id: String,
    /// Destination bucket name (from the ARN S3 sends).
    pub destination_bucket: String,
    pub destination_arn: String,
    pub s3_operation: Option<String>,
    pub request_time: Option<DateTime<Utc>>,
    /// Kept verbatim, including codes this version does not know.
    pub failure_reason: Option<String>,
    pub threshold_seconds: Option<f64>,
    pub replication_time_seconds: Option<f64>,
}

/// Deterministic identity of a delivery: the same event delivered twice has the same id.
/// 128 bits of SHA-256, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl ReplicationEvent {
    /// Hash of bucket, key, version, event name, rule, destination and sequencer.
    pub fn id(&self) -> EventId {
        let mut hasher = Sha256::new();
        for part in [
            self.source_bucket.as_str(),
            self.key.as_str(),
            self.version_id.as_deref().unwrap_or(""),
            self.kind.as_str(),
            self.rule_id.as_str(),
            self.destination_bucket.as_str(),
            self.sequencer.as_deref().unwrap_or(""),
        ] {
            // Length-prefix each part so ("ab","c") and ("a","bc") differ.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EventId(id)
    }
}

/// What one S3 notification record turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum NotificationRecord {
    Replication(Box<ReplicationEvent>),
    /// `Replication:<something new>`: acknowledged and logged; a later version may handle it.
    UnknownReplication {
        event_name: String,
    },
    /// Any other S3 event (`ObjectCreated:Put`, ...): not ours to page on.
    Other {
        event_name: String,
    },
}

/// A parsed S3 notification message.
#[derive(Debug, Clone, PartialEq)]
pub enum S3Notification {
    /// Sent once when a notification configuration is saved.
    TestEvent {
        bucket: Option<String>,
    },
    Records(Vec<NotificationRecord>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message is not valid JSON: {0}")]
    InvalidJson(String),
    #[error(
        "message is not an S3 event notification (no `Records` array and not an s3:TestEvent)"
    )]
    NotS3Notification,
    #[error("record {index}: {reason}")]
    InvalidRecord { index: usize, reason: String },
}

/// Whether `text` can only be a JSON object. Every event this library reads is one, and serde's
/// derived readers would also fill a struct from an array of its fields in order, so the parsers
/// ask this before reading a payload.
pub fn is_json_object_text(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

impl S3Notification {
    /// Parse an S3 notification from its JSON text. An SNS notification envelope around one
    /// (what an SQS queue subscribed to a topic receives) is opened first.
    pub fn from_json(text: &str) -> Result<Self, ParseError> {
        // Without this `[[], null, null]` read as a notification with no records and was
        // acknowledged, never dead-lettered (found by tests/bad_input.rs).
        if !is_json_object_text(text) {
            return Err(match serde_json::from_str::<de::IgnoredAny>(text) {
                Ok(_) => ParseError::NotS3Notification,
                Err(e) => ParseError::InvalidJson(e.to_string()),
            });
        }
        // Fast path: one typed pass for the common, well-formed message. Anything it cannot take
        // (odd shapes, bad values) goes through the record-by-record path for a precise answer.
        if let Some(notification) = Self::well_formed_records(text) {
            return Ok(notification);
        }
        let message: MessageWire<'_> =
            serde_json::from_str(text).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
        if message.kind.as_deref() == Some("Notification") {
            return match message.message {
                Some(inner) => Self::from_json(&inner),
                None => Err(ParseError::InvalidJson(
                    "SNS envelope has no string `Message`".into(),
                )),
            };
        }
        if message.event.as_deref() == Some("s3:TestEvent") {
            return Ok(Self::TestEvent {
                bucket: message.bucket,
            });
        }
        let records = message.records.ok_or(ParseError::NotS3Notification)?;
        records
            .iter()
            .enumerate()
            .map(|(index, record)| {
                parse_record(record.get())
                    .map_err(|reason| ParseError::InvalidRecord { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Records)
    }

    /// The common case read in one typed pass: a top-level `Records` array of well-formed
    /// records (`None`: anything else, which [`Self::from_json`] reads record by record).
    pub fn well_formed_records(text: &str) -> Option<Self> {
        let fast = serde_json::from_str::<FastMessageWire<'_>>(text).ok()?;
        if fast.kind.is_some() || fast.event.is_some() {
            return None;
        }
        fast.records?
            .into_iter()
            .map(FastRecordWire::into_record)
            .collect::<Result<Vec<_>, ()>>()
            .ok()
            .map(Self::Records)
    }

    /// The same from an already parsed document (a direct invocation's payload).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ParseError> {
        // Direct invocations carry one record; re-serialising keeps a single parsing path.
        Self::from_json(&value.to_string())
    }
}

/// The top level of a message: an S3 notification, an s3:TestEvent, or an SNS envelope.
#[derive(Deserialize)]
struct MessageWire<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "Bucket")]
    bucket: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// The whole message in one pass, for the fast path.
#[derive(Deserialize)]
struct FastMessageWire<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<FastRecordWire<'a>>>,
    #[serde(rename = "Event")]
    event: Option<&'a RawValue>,
    #[serde(rename = "Type")]
    kind: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FastRecordWire<'a> {
    #[serde(borrow)]
    event_name: Cow<'a, str>,
    aws_region: Option<String>,
    #[serde(borrow)]
    event_time: Cow<'a, str>,
    s3: S3EntityWire,
    #[serde(borrow)]
    replication_event_data: Option<ReplicationDataWire<'a>>,
}

impl FastRecordWire<'_> {
    fn into_record(self) -> Result<NotificationRecord, ()> {
        let kind = ReplicationEventKind::from_event_name(&self.event_name).ok_or(())?;
        let data = self.replication_event_data.ok_or(())?;
        build_event(kind, self.aws_region, &self.event_time, self.s3, data)
            .map(|event| NotificationRecord::Replication(Box::new(event)))
            .map_err(|_| ())
    }
}

/// A record's head; the S3 and replication parts are parsed only for replication events, so a
/// non-replication event with an odd shape is still acknowledged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordWire<'a> {
    event_name: Option<Cow<'a, str>>,
    aws_region: Option<String>,
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    s3: Option<&'a RawValue>,
    #[serde(borrow)]
    replication_event_data: Option<&'a RawValue>,
}

fn parse_record(text: &str) -> Result<NotificationRecord, String> {
    let wire: RecordWire<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let event_name = wire
        .event_name
        .ok_or_else(|| "missing string field `eventName`".to_owned())?;
    let Some(kind) = ReplicationEventKind::from_event_name(&event_name) else {
        let short = event_name.strip_prefix("s3:").unwrap_or(&event_name);
        return Ok(if short.starts_with("Replication:") {
            NotificationRecord::UnknownReplication {
                event_name: event_name.into_owned(),
            }
        } else {
            NotificationRecord::Other {
                event_name: event_name.into_owned(),
            }
        });
    };
    let s3: S3EntityWire = wire
        .s3
        .ok_or_else(|| "missing field `s3`".to_owned())
        .and_then(|raw| serde_json::from_str(raw.get()).map_err(|e| format!("`s3`: {e}")))?;
    let data: ReplicationDataWire<'_> = wire
        .replication_event_data
        .ok_or_else(|| format!("{event_name} record has no `replicationEventData`"))
        .and_then(|raw| {
            serde_json::from_str(raw.get()).map_err(|e| format!("`replicationEventData`: {e}"))
        })?;
    let event_time = wire
        .event_time
        .ok_or_else(|| "missing field `eventTime`".to_owned())?;
    build_event(kind, wire.aws_region, &event_time, s3, data)
        .map(|event| NotificationRecord::Replication(Box::new(event)))
}

fn build_event(
    kind: ReplicationEventKind,
    region: Option<String>,
    event_time: &str,
    s3: S3EntityWire,
    data: ReplicationDataWire<'_>,
) -> Result<ReplicationEvent, String> {
    let event_time = parse_time(event_time).map_err(|e| format!("`eventTime`: {e}"))?;
    let request_time = data
        .request_time
        .as_deref()
        .map(parse_time)
        .transpose()
        .map_err(|e| format!("`replicationEventData.requestTime`: {e}"))?;
    // Every name that reaches a ledger key or a page is checked here (`names`).
    names::bucket_name("s3.bucket.name", &s3.bucket.name)?;
    let destination_bucket = bucket_name_from_arn(&data.destination_bucket);
    names::bucket_name("replicationEventData.destinationBucket", destination_bucket)?;
    names::rule_id(&data.replication_rule_id)?;
    if let Some(reason) = data.failure_reason.as_deref().filter(|r| !r.is_empty()) {
        names::failure_reason(reason)?;
    }
    let key = decode_key(&s3.object.key);
    names::object_key(&s3.object.key, &key)?;
    let version_id = s3.object.version_id.filter(|v| !v.is_empty());
    if let Some(version) = &version_id {
        names::version_id(version)?;
    }
    if let Some(region) = &region {
        names::region("awsRegion", region)?;
    }
    Ok(ReplicationEvent {
        kind,
        region,
        event_time,
        source_bucket: s3.bucket.name,
        key,
        version_id,
        size: s3.object.size,
        sequencer: s3.object.sequencer,
        rule_id: data.replication_rule_id,
        destination_bucket: destination_bucket.to_owned(),
        destination_arn: data.destination_bucket,
        s3_operation: data.s3_operation,
        request_time,
        failure_reason: data.failure_reason,
        threshold_seconds: data.threshold.map(|s| s.0),
        replication_time_seconds: data.replication_time.map(|s| s.0),
    })
}

/// To the millisecond, as S3 writes times and the ledger stores them: a finer time would make
/// every redelivery look like a change to its record and cost writes.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(3))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time ({e})"))
}

/// S3 URL-encodes keys in notifications, with `+` for space. A key whose bytes are not UTF-8
/// after decoding is kept encoded rather than guessed at, so two keys never collapse into one.
pub fn decode_key(encoded: &str) -> String {
    if !encoded.contains(['+', '%']) {
        return encoded.to_owned();
    }
    let spaced = encoded.replace('+', " ");
    match percent_decode_str(&spaced).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => encoded.to_owned(),
    }
}

/// `arn:aws:s3:::bucket` -> `bucket`; a bare name is returned as it is.
pub fn bucket_name_from_arn(arn: &str) -> &str {
    arn.rsplit_once(":::").map_or(arn, |(_, name)| name)
}

#[derive(Deserialize)]
struct S3EntityWire {
    bucket: BucketWire,
    object: ObjectWire,
}

#[derive(Deserialize)]
struct BucketWire {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectWire {
    key: String,
    size: Option<u64>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplicationDataWire<'a> {
    replication_rule_id: String,
    destination_bucket: String,
    s3_operation: Option<String>,
    /// Only parsed into a time: borrowed (every record carries one).
    #[serde(borrow)]
    request_time: Option<Cow<'a, str>>,
    failure_reason: Option<String>,
    threshold: Option<Seconds>,
    replication_time: Option<Seconds>,
}

/// `threshold` and `replicationTime` arrive as `"900"` or `900` depending on the sender.
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, as a number or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                // Same bounds as every other form: `1000000000001` must not pass as a number
                // when `"1000000000001"` is refused as a string (found by tests/bad_input.rs).
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                // Up to ~30,000 years: anything larger is garbage (and beyond what DynamoDB numbers hold).
                if v.is_finite() && (0.0..=1e12).contains(&v) {
                    Ok(Seconds(v))
                } else {
                    Err(E::custom(format!(
                        "{v} is not a non-negative number of seconds"
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                // Some senders append a unit; accept "900", "900s", " 900 ".
                let trimmed = v.trim().trim_end_matches('s').trim();
                trimmed
                    .parse::<f64>()
                    .map_err(|_| E::custom(format!("`{v}` is not a number of seconds")))
                    .and_then(|n| self.visit_f64(n))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(event_name: &str, data: serde_json::Value) -> serde_json::Value {
        json!({
            "eventVersion": "2.2", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-23T03:00:00.123Z", "eventName": event_name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "src", "arn": "arn:aws:s3:::src"},
                   "object": {"key": "a+b%2Fc%28d%29.txt", "size": 12, "versionId": "v1", "sequencer": "00AB"}},
            "replicationEventData": data,
        })
    }

    fn parse_one(value: serde_json::Value) -> Result<NotificationRecord, ParseError> {
        match S3Notification::from_json(&json!({ "Records": [value] }).to_string())? {
            S3Notification::Records(mut records) => Ok(records.remove(0)),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn replication(record: NotificationRecord) -> ReplicationEvent {
        match record {
            NotificationRecord::Replication(event) => *event,
            other => panic!("not a replication event: {other:?}"),
        }
    }

    #[test]
    fn failed_replication_is_parsed_and_key_decoded() {
        let event = replication(
            parse_one(record(
                "Replication:OperationFailedReplication",
                json!({"replicationRuleId": "r1", "destinationBucket": "arn:aws:s3:::dst",
                   "s3Operation": "OBJECT_PUT", "requestTime": "2026-11-23T02:59:59Z",
                   "failureReason": "DstPutObjectNotPermitted"}),
            ))
            .unwrap(),
        );
        assert_eq!(event.kind, ReplicationEventKind::OperationFailedReplication);
        assert_eq!(event.key, "a b/c(d).txt");
        assert_eq!(event.destination_bucket, "dst");
        assert_eq!(event.destination_arn, "arn:aws:s3:::dst");
        assert_eq!(
            event.failure_reason.as_deref(),
            Some("DstPutObjectNotPermitted")
        );
        assert_eq!(event.size, Some(12));
        assert!(event.request_time.is_some());
    }

    #[test]
    fn threshold_fields_accept_strings_and_numbers() {
        for (threshold, time) in [(json!("900"), json!("1020")), (json!(900), json!(1020.5))] {
            let event = replication(
                parse_one(record(
                    "Replication:OperationMissedThreshold",
                    json!({"replicationRuleId": "r1", "destinationBucket": "arn:aws:s3:::dst",
                       "threshold": threshold, "replicationTime": time}),
                ))
                .unwrap(),
            );
            assert_eq!(event.threshold_seconds, Some(900.0));
            assert!(event.replication_time_seconds.unwrap() >= 1020.0);
        }
    }

    #[test]
    fn wrong_types_are_clear_errors() {
        let err = parse_one(record(
            "Replication:OperationMissedThreshold",
            json!({"replicationRuleId": "r1", "destinationBucket": "arn:aws:s3:::dst", "threshold": true}),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("record 0"), "{err}");
        assert!(err.to_string().contains("seconds"), "{err}");
    }

    #[test]
    fn missing_replication_data_is_an_error() {
        let mut value = record("Replication:OperationFailedReplication", json!(null));
        value
            .as_object_mut()
            .unwrap()
            .remove("replicationEventData");
        let err = parse_one(value).unwrap_err();
        assert!(err.to_string().contains("replicationEventData"), "{err}");
    }

    #[test]
    fn unknown_codes_and_names_are_kept() {
        let event = replication(
            parse_one(record(
                "Replication:OperationFailedReplication",
                json!({"replicationRuleId": "r1", "destinationBucket": "dst", "failureReason": "BrandNewCode"}),
            ))
            .unwrap(),
        );
        assert_eq!(event.failure_reason.as_deref(), Some("BrandNewCode"));
        assert_eq!(event.destination_bucket, "dst");
        assert_eq!(
            parse_one(record("Replication:OperationSomethingNew", json!({}))).unwrap(),
            NotificationRecord::UnknownReplication {
                event_name: "Replication:OperationSomethingNew".into()
            }
        );
        assert_eq!(
            parse_one(record("ObjectCreated:Put", json!(null))).unwrap(),
            NotificationRecord::Other {
                event_name: "ObjectCreated:Put".into()
            }
        );
    }

    #[test]
    fn test_event_and_garbage() {
        assert_eq!(
            S3Notification::from_json(
                r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#
            ),
            Ok(S3Notification::TestEvent {
                bucket: Some("b".into())
            })
        );
        assert!(matches!(
            S3Notification::from_json(r#"{"Records": [{"eventName""#),
            Err(ParseError::InvalidJson(_))
        ));
        assert_eq!(
            S3Notification::from_json(r#"{"hello":"world"}"#),
            Err(ParseError::NotS3Notification)
        );
    }

    #[test]
    fn event_id_is_deterministic_and_distinguishes_fields() {
        let base = replication(
            parse_one(record(
                "Replication:OperationFailedReplication",
                json!({"replicationRuleId": "r1", "destinationBucket": "dst", "failureReason": "X"}),
            ))
            .unwrap(),
        );
        assert_eq!(base.id(), base.clone().id());
        let mut other = base.clone();
        other.sequencer = Some("00AC".into());
        assert_ne!(base.id(), other.id());
        let mut late = base.clone();
        late.kind = ReplicationEventKind::OperationMissedThreshold;
        assert_ne!(base.id(), late.id());
    }

    #[test]
    fn invalid_utf8_key_is_kept_encoded() {
        assert_eq!(decode_key("bad%FF"), "bad%FF");
        assert_eq!(decode_key("caf%C3%A9+menu"), "café menu");
    }
}
