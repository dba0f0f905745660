//! Notifications as S3 writes them, and seeded shuffles: the inputs of tests, benchmarks and
//! the demo.

use crate::event::ReplicationEventKind;
use chrono::{DateTime, Utc};

/// Builds S3 replication notifications the way S3 writes them, for tests, benchmarks and demos.
#[derive(Debug, Clone)]
pub struct NotificationBuilder {
    pub source_bucket: String,
    pub destination_bucket: String,
    pub rule_id: String,
    pub event_time: DateTime<Utc>,
}

impl NotificationBuilder {
    pub fn new(source_bucket: &str, destination_bucket: &str, rule_id: &str) -> Self {
        NotificationBuilder {
            source_bucket: source_bucket.to_owned(),
            destination_bucket: destination_bucket.to_owned(),
            rule_id: rule_id.to_owned(),
            event_time: DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
        }
    }

    /// One record. `key` is the real key; it is URL-encoded here as S3 does.
    pub fn record(
        &self,
        kind: ReplicationEventKind,
        key: &str,
        version_id: &str,
        failure_reason: Option<&str>,
    ) -> serde_json::Value {
        let mut data = serde_json::json!({
            "replicationRuleId": self.rule_id,
            "destinationBucket": format!("arn:aws:s3:::{}", self.destination_bucket),
            "s3Operation": "OBJECT_PUT",
            "requestTime": self.event_time.to_rfc3339(),
        });
        if let Some(reason) = failure_reason {
            data["failureReason"] = reason.into();
        }
        if matches!(
            kind,
            ReplicationEventKind::OperationMissedThreshold
                | ReplicationEventKind::OperationReplicatedAfterThreshold
        ) {
            data["threshold"] = "900".into();
            data["replicationTime"] = 1200.into();
        }
        let encoded: String = key
            .split(' ')
            .map(|part| percent_encoding::utf8_percent_encode(part, KEY_ENCODE).to_string())
            .collect::<Vec<_>>()
            .join("+");
        serde_json::json!({
            "eventVersion": "2.2",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": self.event_time.to_rfc3339(),
            "eventName": format!("Replication:{}", kind.as_str()),
            "userIdentity": {"principalId": "s3.amazonaws.com"},
            "requestParameters": {"sourceIPAddress": "s3.amazonaws.com"},
            "responseElements": {"x-amz-request-id": "0000", "x-amz-id-2": "0000"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "replmon",
                "bucket": {"name": self.source_bucket, "arn": format!("arn:aws:s3:::{}", self.source_bucket)},
                "object": {"key": encoded, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                           "versionId": version_id, "sequencer": format!("00{:016X}", fxhash(key, version_id))}
            },
            "replicationEventData": data,
        })
    }

    /// A notification (`{"Records": [...]}`) as its JSON text.
    pub fn notification(records: Vec<serde_json::Value>) -> String {
        serde_json::json!({ "Records": records }).to_string()
    }

    /// An SQS event whose messages carry these bodies, with ids `msg-<n>`.
    pub fn sqs_event(bodies: &[String]) -> serde_json::Value {
        let records: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                serde_json::json!({
                    "messageId": format!("msg-{i}"),
                    "receiptHandle": "handle",
                    "body": body,
                    "attributes": {},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:replmon-events",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }
}

/// Characters S3 leaves as they are in notification keys (space is handled as `+`).
const KEY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn fxhash(a: &str, b: &str) -> u64 {
    a.bytes()
        .chain([0u8])
        .chain(b.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, byte| {
            (h ^ byte as u64).wrapping_mul(0x100_0000_01b3)
        })
}

/// SplitMix64: a tiny seeded generator for tests and simulators, so a seed reproduces exactly.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Indices `0..n`, each three times, in an order fixed by the seed (Fisher-Yates): at-least-once
/// delivery with duplicates and reordering.
pub fn thrice_shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).flat_map(|i| [i, i, i]).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
