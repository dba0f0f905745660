//! The ledger in one DynamoDB table (keys `pk`, `sk`; TTL attribute `expires_at`), one file per
//! port: `replication` (objects, incidents, pages; the backlog counter alarm pages read), `alarm`,
//! `canary`, `status` (what `replmon` reads), `migrate` (upgrading a table written by an earlier
//! release). Item layout (also in the README):
//! - object     `pk=OBJECT#<source bucket>`   `sk=<destination>#<key>#<version id|null>`, with
//!   `counted_in`, the incidents it was counted in (the membership)
//! - incident   `pk=INCIDENT#<source bucket>` `sk=REPLICATION#<destination>#<cause>#<rule id>`,
//!   with its counters `event_count`, `recovered_count`, `backlog_count`
//! - marker     `pk=MEMBERS#<source bucket>#<incident sk>` `sk=<event id>` (not-tracked events,
//!   which have no object record)
//! - catalog    `pk=CATALOG` `sk=SOURCE#<source bucket>` or `sk=ALARM#<alarm key>` (what reports list)

use super::{describe, is_transient};
use crate::incident::IncidentKey;
use crate::ledger::LedgerError;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

pub(super) type Item = HashMap<String, AttributeValue>;

mod alarm;
mod canary;
mod commit;
mod migrate;
mod redrive;
mod replication;
mod report;
mod status;
pub use alarm::alarm_from_item;
pub use migrate::{Migration, MigrationReport};
pub use replication::{
    incident_from_item, incident_key, object_from_item, object_key, object_key_of,
};
pub use status::CatalogRebuild;

/// The partition listing source buckets and alarms (`sk=SOURCE#<bucket>`, `sk=ALARM#<key>`).
const CATALOG_PARTITION: &str = "CATALOG";

/// How long a process trusts its own catalog write before refreshing the entry's TTL.
const CATALOG_REFRESH: StdDuration = StdDuration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct DynamoDbLedger {
    client: Client,
    table: String,
    /// Catalog entries this process wrote, and when: one write per bucket or alarm per hour.
    catalogued: Arc<Mutex<HashMap<String, Instant>>>,
}

impl DynamoDbLedger {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        DynamoDbLedger {
            client: Client::new(sdk),
            table: table.to_owned(),
            catalogued: Arc::default(),
        }
    }

    /// Warm-up during init (see [`super::warm_up`]): read a key that is never written.
    pub async fn warm_up(&self) -> Result<(), String> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S("WARM-UP".into()))
            .key("sk", AttributeValue::S("WARM-UP".into()))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| describe(&error))
    }

    /// List a source bucket in the catalog, so reports find its partitions without a scan.
    pub(super) async fn catalog_source(&self, source_bucket: &str, expires_at: DateTime<Utc>) {
        self.catalog(
            format!("SOURCE#{source_bucket}"),
            ("source_bucket", source_bucket),
            expires_at,
        )
        .await
    }

    /// Put a catalog entry (`pk=CATALOG`) unless this process did so within the last hour. The
    /// put is idempotent; it outlives the records it points to by a day. Best effort: a failure
    /// (say, throttling on the catalog partition during a storm) must not delay a page, and the
    /// next write about the same bucket or alarm tries again.
    pub(super) async fn catalog(&self, sk: String, entry: (&str, &str), expires_at: DateTime<Utc>) {
        if let Err(error) = self.put_catalog(sk, entry, expires_at).await {
            tracing::warn!(%error, "catalog entry not written; the next write retries it");
        }
    }

    pub(crate) async fn put_catalog(
        &self,
        sk: String,
        (name, value): (&str, &str),
        expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let fresh = |map: &HashMap<String, Instant>| {
            map.get(&sk)
                .is_some_and(|at| at.elapsed() < CATALOG_REFRESH)
        };
        if fresh(&self.catalogued.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CATALOG_PARTITION))
            .item("sk", s(sk.clone()))
            .item("entity", s("catalog"))
            .item(name, s(value))
            .item(
                "expires_at",
                n((expires_at + chrono::Duration::days(1)).timestamp()),
            )
            .send()
            .await
            .map_err(|e| sdk_error("write catalog entry", &e))?;
        self.catalogued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sk, Instant::now());
        Ok(())
    }

    pub(super) async fn get(
        &self,
        pk: String,
        sk: String,
        operation: &'static str,
    ) -> Result<Option<Item>, LedgerError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| sdk_error(operation, &e))
    }

    /// Put an item guarded by its `revision`: written only if the stored one is still
    /// `expected`, or (for `None`) if no item has its key. `Ok(false)`: someone wrote first.
    pub(super) async fn put_revised(
        &self,
        item: Item,
        expected: Option<u64>,
        operation: &'static str,
    ) -> Result<bool, LedgerError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = match expected {
            Some(revision) => request
                .condition_expression("revision = :rev")
                .expression_attribute_values(":rev", n(revision)),
            None => request.condition_expression("attribute_not_exists(pk)"),
        };
        written(request.send().await, operation)
    }

    /// An update whose failed condition means "nothing to do" rather than an error.
    pub(super) async fn conditional_update(
        &self,
        key: &IncidentKey,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        operation: &'static str,
    ) -> Result<bool, LedgerError> {
        let (pk, sk) = replication::incident_key(key);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(update)
            .condition_expression(condition);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        written(request.send().await, operation)
    }
}

/// Whether a conditional write went through: `Ok(false)` when its condition failed.
pub(super) fn written<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &'static str,
) -> Result<bool, LedgerError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(sdk_error(operation, &e)),
    }
}

pub(super) fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    error: &SdkError<E, HttpResponse>,
) -> LedgerError {
    let detail = describe(error);
    if error.code() == Some("ResourceNotFoundException") {
        LedgerError::MissingTable { operation, detail }
    } else if is_transient(error) {
        LedgerError::Unavailable { operation, detail }
    } else {
        LedgerError::Refused { operation, detail }
    }
}

/// Fixed-width UTC with milliseconds, so string comparison in conditions orders by time.
pub fn ts(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn get_time(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_s(item, name)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn corrupt(item: &Item, detail: &str) -> LedgerError {
    LedgerError::Corrupt {
        item: format!(
            "{}/{}",
            get_s(item, "pk").unwrap_or("?"),
            get_s(item, "sk").unwrap_or("?")
        ),
        detail: detail.to_owned(),
    }
}
