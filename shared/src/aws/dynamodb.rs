//! The ledger in one DynamoDB table (keys `pk`, `sk`; TTL attribute `expires_at`).
//!
//! Item layout (also in the README):
//! - object     `pk=OBJECT#<source bucket>`   `sk=<destination>#<key>#<version id|null>`
//! - incident   `pk=INCIDENT#<source bucket>` `sk=REPLICATION#<destination>#<cause>#<rule id>`
//! - member     `pk=MEMBERS#<source bucket>#<incident sk>`   `sk=<event id>`
//! - recovered  `pk=RECOVERED#<source bucket>#<incident sk>` `sk=<event id>`
//! - catalog    `pk=CATALOG` `sk=SOURCE#<source bucket>` or `sk=ALARM#<alarm key>` (what reports list)
//!
//! No transactions: the object record is read, merged and written back guarded by its revision,
//! then the event's membership is put only if absent. That put decides new versus duplicate, and
//! counts are derived from memberships, so a crash between the two writes is repaired by the retry
//! with no counter to drift. (It also keeps a storm off one hot incident item.)

use super::{describe, is_transient};
use crate::alarm::{AlarmNotification, AlarmRecord, AlarmState};
use crate::alarm_monitor::{AlarmStore, BacklogCounter};
use crate::event::{ReplicationEvent, ReplicationEventKind};
use crate::incident::{Incident, IncidentCause, IncidentKey};
use crate::ledger::{
    object_sort_key, EventCounts, Ledger, LedgerError, ObjectRecord, PageClaim, PageSent, Recorded,
};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Select};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

type Item = HashMap<String, AttributeValue>;

mod canary;
mod status;
pub use status::CatalogRebuild;

/// The partition listing source buckets and alarms (`sk=SOURCE#<bucket>`, `sk=ALARM#<key>`).
const CATALOG_PARTITION: &str = "CATALOG";

/// Concurrent writers of one object record retry this often before the message is retried later.
const MAX_WRITE_ATTEMPTS: u32 = 8;

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
    async fn catalog_source(&self, source_bucket: &str, expires_at: DateTime<Utc>) {
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
    async fn catalog(&self, sk: String, entry: (&str, &str), expires_at: DateTime<Utc>) {
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

    async fn get(
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
    async fn put_revised(
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
    async fn conditional_update(
        &self,
        key: &IncidentKey,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        operation: &'static str,
    ) -> Result<bool, LedgerError> {
        let (pk, sk) = incident_key(key);
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

    /// Read-merge-write of the object record, guarded by its revision.
    async fn merge_object(
        &self,
        fresh: ObjectRecord,
        event: &ReplicationEvent,
        expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let (pk, sk) = object_key(&fresh);
        // Most events concern an object the ledger has not seen: try the plain insert first and
        // read only when the record exists (a later event for the object, or a redelivery).
        let mut stored: Option<(ObjectRecord, u64)> = None;
        for attempt in 0..MAX_WRITE_ATTEMPTS {
            let (record, revision) = match stored.take() {
                Some((mut record, revision)) => {
                    let before = record.clone();
                    record.merge(event);
                    if record == before {
                        // A redelivery: nothing to change, so write nothing (not even the revision).
                        return Ok(());
                    }
                    (record, Some(revision))
                }
                None => (fresh.clone(), None),
            };
            let mut request = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(object_item(&record, revision, expires_at)));
            request = match revision {
                Some(r) => request
                    .condition_expression("revision = :rev")
                    .expression_attribute_values(":rev", n(r)),
                None => request.condition_expression("attribute_not_exists(pk)"),
            };
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    if attempt > 0 {
                        tracing::debug!(attempt, key = %record.key, "object record changed under us; merging again");
                        tokio::time::sleep(StdDuration::from_millis(5 * 2u64.pow(attempt.min(6))))
                            .await;
                    }
                    stored = self
                        .get(pk.clone(), sk.clone(), "read object")
                        .await?
                        .map(|item| object_from_item(&item))
                        .transpose()?;
                }
                Err(e) => return Err(sdk_error("write object", &e)),
            }
        }
        Err(LedgerError::Unavailable {
            operation: "write object",
            detail: format!("still conflicting after {MAX_WRITE_ATTEMPTS} attempts"),
        })
    }

    /// Count the items of one partition (key-only reads, paginated).
    async fn count_partition(&self, pk: String) -> Result<u64, LedgerError> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("count incident events", &e))?;
            total += out.count.max(0) as u64;
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total),
            }
        }
    }
}

impl Ledger for DynamoDbLedger {
    async fn record_event(
        &self,
        event: &ReplicationEvent,
        incident: &IncidentKey,
        expires_at: DateTime<Utc>,
    ) -> Result<Recorded, LedgerError> {
        if let Some(fresh) = ObjectRecord::from_event(event) {
            self.merge_object(fresh, event, expires_at).await?;
        }
        let event_id = event.id();
        let (members, recovered) = membership_partitions(incident);
        let pk = if event.kind == ReplicationEventKind::OperationReplicatedAfterThreshold {
            recovered
        } else {
            members
        };
        let mut item: Item = [
            ("pk", s(pk)),
            ("sk", s(event_id.to_string())),
            ("entity", s("member")),
            ("event_name", s(event.kind.as_str())),
            ("key", s(event.key.clone())),
            ("event_time", s(ts(event.event_time))),
            ("expires_at", n(expires_at.timestamp())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(version) = &event.version_id {
            item.insert("version_id".to_owned(), s(version.clone()));
        }
        Ok(
            if self
                .put_revised(item, None, "record event membership")
                .await?
            {
                Recorded::New
            } else {
                Recorded::Duplicate
            },
        )
    }

    async fn touch_incident(
        &self,
        incident: &IncidentKey,
        (first, last): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Incident, LedgerError> {
        self.catalog_source(&incident.source_bucket, expires_at)
            .await;
        let (pk, sk) = incident_key(incident);
        let reason = match &incident.cause {
            IncidentCause::Failure(reason) => reason.clone(),
            _ => "-".to_owned(),
        };
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(
                "SET entity = :entity, source_bucket = :src, destination_bucket = :dst, rule_id = :rule, \
                 #cause = :cause, kind = :kind, severity = :severity, reason = :reason, #state = :open, \
                 opened_at = if_not_exists(opened_at, :now), pages_sent = if_not_exists(pages_sent, :zero), \
                 first_seen = if_not_exists(first_seen, :first), last_seen = if_not_exists(last_seen, :last), \
                 last_recorded_at = :now, expires_at = :exp",
            )
            .expression_attribute_names("#cause", "cause")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":entity", s("incident"))
            .expression_attribute_values(":src", s(incident.source_bucket.clone()))
            .expression_attribute_values(":dst", s(incident.destination_bucket.clone()))
            .expression_attribute_values(":rule", s(incident.rule_id.clone()))
            .expression_attribute_values(":cause", s(incident.cause.code()))
            .expression_attribute_values(":kind", s(incident.cause.kind()))
            .expression_attribute_values(":severity", s(incident.cause.severity().as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":open", s("OPEN"))
            .expression_attribute_values(":now", s(ts(now)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":first", s(ts(first)))
            .expression_attribute_values(":last", s(ts(last)))
            .expression_attribute_values(":exp", n(expires_at.timestamp()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error("update incident", &e))?;
        let mut stored = incident_from_item(&updated.attributes.unwrap_or_default())?;
        // if_not_exists above seeded the span; these only ever widen it, and only when needed.
        if stored.first_seen.is_none_or(|t| first < t)
            && self
                .conditional_update(
                    incident,
                    "SET first_seen = :t",
                    "first_seen > :t",
                    vec![(":t", s(ts(first)))],
                    "widen incident span",
                )
                .await?
        {
            stored.first_seen = Some(first);
        }
        if stored.last_seen.is_none_or(|t| last > t)
            && self
                .conditional_update(
                    incident,
                    "SET last_seen = :t",
                    "last_seen < :t",
                    vec![(":t", s(ts(last)))],
                    "widen incident span",
                )
                .await?
        {
            stored.last_seen = Some(last);
        }
        Ok(stored)
    }

    async fn count_events(&self, incident: &IncidentKey) -> Result<EventCounts, LedgerError> {
        let (members, recovered) = membership_partitions(incident);
        Ok(EventCounts {
            events: self.count_partition(members).await?,
            recovered: self.count_partition(recovered).await?,
        })
    }

    async fn incident(&self, incident: &IncidentKey) -> Result<Option<Incident>, LedgerError> {
        let (pk, sk) = incident_key(incident);
        self.get(pk, sk, "read incident")
            .await?
            .map(|item| incident_from_item(&item))
            .transpose()
    }

    async fn claim_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> Result<bool, LedgerError> {
        self.conditional_update(
            incident,
            "SET page_claim = :token, page_claim_at = :at",
            "pages_sent = :expected AND (attribute_not_exists(page_claim) OR page_claim_at < :cutoff)",
            vec![
                (":token", s(claim.token.clone())),
                (":at", s(ts(claim.at))),
                (":expected", n(claim.expected_pages_sent)),
                (":cutoff", s(ts(claim.lease_cutoff()))),
            ],
            "claim page",
        )
        .await
    }

    async fn confirm_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
        sent: PageSent,
    ) -> Result<(), LedgerError> {
        let confirmed = self
            .conditional_update(
                incident,
                "SET pages_sent = pages_sent + :one, last_page_at = :at, event_count_at_last_page = :count, \
                 first_page_at = if_not_exists(first_page_at, :at) REMOVE page_claim, page_claim_at",
                "page_claim = :token",
                vec![
                    (":one", n(1)),
                    (":at", s(ts(sent.at))),
                    (":count", n(sent.event_count)),
                    (":token", s(claim.token.clone())),
                ],
                "confirm page",
            )
            .await?;
        if !confirmed {
            tracing::warn!(incident = %incident.id(), "page sent after its claim expired; another page may follow");
        }
        Ok(())
    }

    async fn release_page(
        &self,
        incident: &IncidentKey,
        claim: &PageClaim,
    ) -> Result<(), LedgerError> {
        self.conditional_update(
            incident,
            "REMOVE page_claim, page_claim_at",
            "page_claim = :token",
            vec![(":token", s(claim.token.clone()))],
            "release page claim",
        )
        .await
        .map(|_| ())
    }
}

/// Whether a conditional write went through: `Ok(false)` when its condition failed.
fn written<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &'static str,
) -> Result<bool, LedgerError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(sdk_error(operation, &e)),
    }
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn object_key(record: &ObjectRecord) -> (String, String) {
    object_key_of(
        &record.source_bucket,
        &record.destination_bucket,
        &record.key,
        record.version_id.as_deref(),
    )
}

/// The object item's key for a source, destination, S3 key and version.
pub fn object_key_of(
    source_bucket: &str,
    destination_bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> (String, String) {
    (
        format!("OBJECT#{source_bucket}"),
        object_sort_key(destination_bucket, key, version_id),
    )
}

pub fn incident_key(key: &IncidentKey) -> (String, String) {
    (format!("INCIDENT#{}", key.source_bucket), key.id())
}

/// Partitions holding an incident's events and its recoveries.
pub fn membership_partitions(key: &IncidentKey) -> (String, String) {
    (
        format!("MEMBERS#{}#{}", key.source_bucket, key.id()),
        format!("RECOVERED#{}#{}", key.source_bucket, key.id()),
    )
}

fn object_item(record: &ObjectRecord, revision: Option<u64>, expires_at: DateTime<Utc>) -> Item {
    let (pk, sk) = object_key(record);
    let mut item: Item = [
        ("pk", s(pk)),
        ("sk", s(sk)),
        ("entity", s("object")),
        ("source_bucket", s(record.source_bucket.clone())),
        ("destination_bucket", s(record.destination_bucket.clone())),
        ("key", s(record.key.clone())),
        ("rule_id", s(record.rule_id.clone())),
        ("status", s(record.status().as_str())),
        ("first_seen", s(ts(record.first_seen))),
        ("last_seen", s(ts(record.last_seen))),
        ("revision", n(revision.map_or(1, |r| r + 1))),
        ("expires_at", n(expires_at.timestamp())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let optional = [
        ("version_id", record.version_id.clone().map(s)),
        ("size", record.size.map(n)),
        ("failure_reason", record.failure_reason.clone().map(s)),
        ("failed_at", record.failed_at.map(|t| s(ts(t)))),
        ("late_at", record.late_at.map(|t| s(ts(t)))),
        (
            "replicated_late_at",
            record.replicated_late_at.map(|t| s(ts(t))),
        ),
        ("threshold_seconds", record.threshold_seconds.map(n)),
        (
            "replication_time_seconds",
            record.replication_time_seconds.map(n),
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_time(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_s(item, name)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn corrupt(item: &Item, detail: &str) -> LedgerError {
    LedgerError::Corrupt {
        item: format!(
            "{}/{}",
            get_s(item, "pk").unwrap_or("?"),
            get_s(item, "sk").unwrap_or("?")
        ),
        detail: detail.to_owned(),
    }
}

/// Read an object item back, with its revision.
pub fn object_from_item(item: &Item) -> Result<(ObjectRecord, u64), LedgerError> {
    let required = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(item, &format!("no `{name}`")))
    };
    let required_time = |name: &str| {
        get_time(item, name).ok_or_else(|| corrupt(item, &format!("no valid `{name}`")))
    };
    let record = ObjectRecord {
        source_bucket: required("source_bucket")?,
        destination_bucket: required("destination_bucket")?,
        key: required("key")?,
        version_id: get_s(item, "version_id").map(str::to_owned),
        rule_id: required("rule_id")?,
        size: get_n(item, "size"),
        failure_reason: get_s(item, "failure_reason").map(str::to_owned),
        failed_at: get_time(item, "failed_at"),
        late_at: get_time(item, "late_at"),
        replicated_late_at: get_time(item, "replicated_late_at"),
        threshold_seconds: get_n(item, "threshold_seconds"),
        replication_time_seconds: get_n(item, "replication_time_seconds"),
        first_seen: required_time("first_seen")?,
        last_seen: required_time("last_seen")?,
    };
    let revision = get_n(item, "revision").ok_or_else(|| corrupt(item, "no `revision`"))?;
    Ok((record, revision))
}

/// Read an incident item back.
pub fn incident_from_item(item: &Item) -> Result<Incident, LedgerError> {
    let text = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(item, &format!("no `{name}`")))
    };
    let cause =
        IncidentCause::parse(&text("cause")?).ok_or_else(|| corrupt(item, "unknown `cause`"))?;
    Ok(Incident {
        key: IncidentKey {
            source_bucket: text("source_bucket")?,
            rule_id: text("rule_id")?,
            destination_bucket: text("destination_bucket")?,
            cause,
        },
        opened_at: get_time(item, "opened_at")
            .ok_or_else(|| corrupt(item, "no valid `opened_at`"))?,
        first_seen: get_time(item, "first_seen"),
        last_seen: get_time(item, "last_seen"),
        event_count: get_n(item, "event_count").unwrap_or(0),
        recovered_count: get_n(item, "recovered_count").unwrap_or(0),
        pages_sent: get_n(item, "pages_sent").unwrap_or(0),
        last_page_at: get_time(item, "last_page_at"),
        event_count_at_last_page: get_n(item, "event_count_at_last_page").unwrap_or(0),
        last_recorded_at: get_time(item, "last_recorded_at"),
    })
}

/// Alarm records: `pk=ALARM#<account>#<region>#<alarm name>`, `sk=STATE`.
impl AlarmStore for DynamoDbLedger {
    async fn alarm(&self, alarm_key: &str) -> Result<Option<(AlarmRecord, u64)>, LedgerError> {
        self.get(format!("ALARM#{alarm_key}"), "STATE".into(), "read alarm")
            .await?
            .map(|item| alarm_from_item(&item))
            .transpose()
    }

    async fn put_alarm(
        &self,
        record: &AlarmRecord,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        self.catalog(
            format!("ALARM#{}", record.alarm_key),
            ("alarm_key", &record.alarm_key),
            expires_at,
        )
        .await;
        let mut item: Item = [
            ("pk", s(format!("ALARM#{}", record.alarm_key))),
            ("sk", s("STATE")),
            ("entity", s("alarm")),
            ("alarm_name", s(record.alarm_name.clone())),
            ("state", s(record.state.as_str())),
            ("state_time", s(ts(record.state_time))),
            ("revision", n(expected.map_or(1, |r| r + 1))),
            ("expires_at", n(expires_at.timestamp())),
            (
                "transitions",
                AttributeValue::L(record.transitions.iter().map(|t| s(ts(*t))).collect()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(t) = record.incident_opened_at {
            item.insert("incident_opened_at".into(), s(ts(t)));
        }
        if let Some(t) = record.flapping_since {
            item.insert("flapping_since".into(), s(ts(t)));
        }
        if let Some(pending) = record.pending {
            item.insert("pending_notification".into(), s(pending.code()));
        }
        if let Some(t) = record.pending_since {
            item.insert("pending_since".into(), s(ts(t)));
        }
        self.put_revised(item, expected, "write alarm").await
    }
}

impl BacklogCounter for DynamoDbLedger {
    async fn count_backlog(
        &self,
        source_bucket: &str,
        rule_id: Option<&str>,
        destination_bucket: Option<&str>,
    ) -> Result<u64, LedgerError> {
        let mut filter = "#status IN (:failed, :late)".to_owned();
        if rule_id.is_some() {
            filter.push_str(" AND rule_id = :rule");
        }
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(if destination_bucket.is_some() {
                    "pk = :pk AND begins_with(sk, :dst)"
                } else {
                    "pk = :pk"
                })
                .filter_expression(&filter)
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":pk", s(format!("OBJECT#{source_bucket}")))
                .expression_attribute_values(":failed", s("FAILED"))
                .expression_attribute_values(":late", s("LATE"))
                .select(Select::Count)
                .set_exclusive_start_key(start.take());
            if let Some(rule) = rule_id {
                request = request.expression_attribute_values(":rule", s(rule));
            }
            if let Some(destination) = destination_bucket {
                request = request.expression_attribute_values(":dst", s(format!("{destination}#")));
            }
            let out = request
                .send()
                .await
                .map_err(|e| sdk_error("count backlog", &e))?;
            total += out.count.max(0) as u64;
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total),
            }
        }
    }
}

/// Read an alarm item back, with its revision.
pub fn alarm_from_item(item: &Item) -> Result<(AlarmRecord, u64), LedgerError> {
    let text = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(item, &format!("no `{name}`")))
    };
    let pk = text("pk")?;
    let record = AlarmRecord {
        alarm_key: pk.strip_prefix("ALARM#").unwrap_or(&pk).to_owned(),
        alarm_name: text("alarm_name")?,
        state: AlarmState::parse(&text("state")?)
            .ok_or_else(|| corrupt(item, "unknown `state`"))?,
        state_time: get_time(item, "state_time")
            .ok_or_else(|| corrupt(item, "no valid `state_time`"))?,
        incident_opened_at: get_time(item, "incident_opened_at"),
        transitions: item
            .get("transitions")
            .and_then(|v| v.as_l().ok())
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_s().ok())
                    .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .collect()
            })
            .unwrap_or_default(),
        flapping_since: get_time(item, "flapping_since"),
        pending: get_s(item, "pending_notification").and_then(AlarmNotification::parse),
        pending_since: get_time(item, "pending_since"),
    };
    let revision = get_n(item, "revision").ok_or_else(|| corrupt(item, "no `revision`"))?;
    Ok((record, revision))
}
