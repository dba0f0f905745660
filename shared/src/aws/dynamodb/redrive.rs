//! The re-drive store: a source's current re-drive (`REDRIVE#<source>` / `CURRENT`, guarded by
//! its revision), an index of the open ones (`REDRIVE_OPEN` / `<source>`: what the sweep reads),
//! and the object records a finished job settles (one `BatchGetItem` per 100 versions).

use super::canary::record_item;
use super::status::PartitionQuery;
use super::{get_s, n, object_from_item, object_key_of, s, sdk_error, DynamoDbLedger, Item};
use crate::ledger::{LedgerError, ObjectRecord};
use crate::redrive::files::JobObject;
use crate::redrive::ports::StoredRedrive;
use crate::redrive::{HandOver, RedriveRecord, RedriveStore};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::Utc;
use std::collections::HashMap;

const OPEN_PARTITION: &str = "REDRIVE_OPEN";
const HANDED_PARTITION: &str = "REDRIVE_WANTED";
/// Keys per `BatchGetItem` (DynamoDB's limit).
const BATCH_GET: usize = 100;
/// Rounds of `UnprocessedKeys` before giving up (each after a short pause).
const UNPROCESSED_ROUNDS: u32 = 8;
/// How long a re-drive record lives after its last write (its history for `replmon status`).
const RECORD_DAYS: i64 = 90;

/// The canary's hand-over of a recovered rule (`REDRIVE_WANTED` / `<source>#<dest>#<rule>`).
pub(super) fn hand_over_item(hand: &HandOver) -> Item {
    [
        ("pk", s(HANDED_PARTITION)),
        ("sk", s(hand_over_sk(hand))),
        ("entity", s("redrive-wanted")),
        ("source_bucket", s(hand.source_bucket.clone())),
        ("destination_bucket", s(hand.destination_bucket.clone())),
        ("rule_id", s(hand.rule_id.clone())),
        ("probe_at", s(super::ts(hand.probe_at))),
        (
            "expires_at",
            n((hand.probe_at + chrono::Duration::days(7)).timestamp()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn hand_over_sk(hand: &HandOver) -> String {
    format!(
        "{}#{}#{}",
        hand.source_bucket, hand.destination_bucket, hand.rule_id
    )
}

fn current_key(source_bucket: &str) -> (String, String) {
    (format!("REDRIVE#{source_bucket}"), "CURRENT".to_owned())
}

/// A finished re-drive's copy, kept for `replmon report` (`CURRENT` holds only the latest).
pub(super) const ATTEMPT_PREFIX: &str = "ATTEMPT#";

/// By request time and attempt: attempt numbers start again once `CURRENT` has expired.
fn attempt_key(record: &RedriveRecord) -> (String, String) {
    (
        format!("REDRIVE#{}", record.source_bucket),
        format!(
            "{ATTEMPT_PREFIX}{}#{:06}",
            super::ts(record.requested_at),
            record.attempt
        ),
    )
}

/// How long a finished re-drive's copy is kept: as long as the canary's roll-ups.
const HISTORY_DAYS: i64 = 400;

impl DynamoDbLedger {
    async fn set_open_index(&self, source_bucket: &str, open: bool) -> Result<(), LedgerError> {
        if open {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(OPEN_PARTITION))
                .item("sk", s(source_bucket))
                .item("entity", s("redrive-open"))
                .item("source_bucket", s(source_bucket))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("index open re-drive", &e))
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(OPEN_PARTITION))
                .key("sk", s(source_bucket))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("unindex finished re-drive", &e))
        }
    }
}

impl RedriveStore for DynamoDbLedger {
    async fn current(&self, source_bucket: &str) -> Result<Option<StoredRedrive>, LedgerError> {
        self.revised_record(current_key(source_bucket), "read re-drive")
            .await
    }

    /// The index is written before an open record and removed after a finished one, so every
    /// open re-drive is in it (a stale entry is dropped by [`Self::open`]).
    async fn put_current(
        &self,
        record: &RedriveRecord,
        expected: Option<u64>,
    ) -> Result<bool, LedgerError> {
        let open = record.state.is_open();
        if open {
            self.set_open_index(&record.source_bucket, true).await?;
        } else {
            // Its copy first (an idempotent put): a failure after it leaves the record open,
            // and the next look finishes it again.
            let expires_at = Utc::now() + chrono::Duration::days(HISTORY_DAYS);
            let copy = record_item(
                record,
                attempt_key(record),
                "redrive-attempt",
                vec![("expires_at", n(expires_at.timestamp()))],
            )?;
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(copy))
                .send()
                .await
                .map_err(|e| sdk_error("keep the finished re-drive", &e))?;
        }
        let expires_at = Utc::now() + chrono::Duration::days(RECORD_DAYS);
        let written = self
            .put_revised_record(
                record,
                current_key(&record.source_bucket),
                "redrive",
                expected,
                expires_at,
                "write re-drive",
            )
            .await?;
        if written && !open {
            self.set_open_index(&record.source_bucket, false).await?;
        }
        Ok(written)
    }

    async fn open(&self) -> Result<Vec<StoredRedrive>, LedgerError> {
        let sources: Vec<String> = self
            .query_all(
                PartitionQuery {
                    pk: OPEN_PARTITION.to_owned(),
                    sort: None,
                    consistent: true,
                    upper: None,
                },
                "list open re-drives",
            )
            .await?
            .iter()
            .filter_map(|item| get_s(item, "source_bucket").map(str::to_owned))
            .collect();
        let mut open = Vec::new();
        for source in sources {
            match self.current(&source).await? {
                Some(stored) if stored.0.state.is_open() => open.push(stored),
                // Finished, and its index entry outlived it (a failed delete): drop it.
                _ => {
                    if let Err(error) = self.set_open_index(&source, false).await {
                        tracing::warn!(%error, source_bucket = %source, "stale re-drive index entry left");
                    }
                }
            }
        }
        Ok(open)
    }

    async fn handed_over(&self) -> Result<Vec<HandOver>, LedgerError> {
        let items = self
            .query_all(
                PartitionQuery {
                    pk: HANDED_PARTITION.to_owned(),
                    sort: None,
                    consistent: true,
                    upper: None,
                },
                "list re-drive hand-overs",
            )
            .await?;
        let mut handed = Vec::new();
        for item in &items {
            let field = |name: &str| {
                get_s(item, name)
                    .map(str::to_owned)
                    .ok_or_else(|| super::corrupt(item, &format!("no `{name}`")))
            };
            handed.push(HandOver {
                source_bucket: field("source_bucket")?,
                destination_bucket: field("destination_bucket")?,
                rule_id: field("rule_id")?,
                probe_at: super::get_time(item, "probe_at")
                    .ok_or_else(|| super::corrupt(item, "no valid `probe_at`"))?,
            });
        }
        handed.sort_by_key(|h| h.probe_at);
        Ok(handed)
    }

    async fn drop_hand_over(&self, hand: &HandOver) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(HANDED_PARTITION))
            .key("sk", s(hand_over_sk(hand)))
            // A newer hand-over (a later recovery) stays for the next sweep.
            .condition_expression("probe_at = :at")
            .expression_attribute_values(":at", s(super::ts(hand.probe_at)))
            .send()
            .await;
        super::written(result, "drop a re-drive hand-over").map(|_| ())
    }

    async fn object_records(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        objects: &[JobObject],
    ) -> Result<Vec<(ObjectRecord, u64)>, LedgerError> {
        let mut found = Vec::new();
        // Duplicate keys make DynamoDB refuse the whole request.
        let mut versions: Vec<(&str, Option<&str>)> = objects
            .iter()
            .map(|o| (o.key.as_str(), o.version_id.as_deref()))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        for chunk in versions.chunks(BATCH_GET) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|(key, version)| {
                    let (pk, sk) = object_key_of(source_bucket, destination_bucket, key, *version);
                    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
                })
                .collect();
            let mut round = 0;
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| LedgerError::Refused {
                        operation: "read object records",
                        detail: e.to_string(),
                    })?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("read object records", &e))?;
                let items: Vec<Item> = out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default();
                for item in items {
                    found.push(object_from_item(&item)?);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(LedgerError::Unavailable {
                            operation: "read object records",
                            detail: "DynamoDB left keys unprocessed (throttled)".into(),
                        });
                    }
                    tokio::time::sleep(crate::backoff::jittered(
                        std::time::Duration::from_millis(50) * 2u32.pow(round.min(5)),
                    ))
                    .await;
                }
            }
        }
        Ok(found)
    }
}
