//! The replication ledger: object records (the memberships), incidents with their counters, page
//! claims, and the backlog counts alarm pages read.
//!
//! Hot path: one transaction per batch ([`super::commit`]) puts the object records and moves the
//! counters of their incidents; a redelivered batch is one cancelled transaction that answers
//! the stored records. Pages are claimed, confirmed and released on the incident item.

use super::{corrupt, get_n, get_s, get_time, n, s, sdk_error, ts, DynamoDbLedger, Item};
use crate::alarm::monitor::BacklogCounter;
use crate::delivery::outbox::Claimed;
use crate::delivery::text::Untrusted;
use crate::incident::{Incident, IncidentCause, IncidentKey};
use crate::ledger::{
    object_sort_key, Commit, CommitOutcome, Ledger, LedgerError, Memberships, ObjectRecord,
    PageClaim, PageSent, RedriveMark,
};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Incidents created by this release carry it; an incident without it was written by an earlier
/// release and gets its counts from `replmon migrate`.
pub(super) const LEDGER_SCHEMA: u64 = 2;

impl Ledger for DynamoDbLedger {
    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, LedgerError> {
        self.commit_items(commit).await
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
    ) -> Result<Claimed<Incident, Incident>, LedgerError> {
        let (pk, sk) = incident_key(incident);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET page_claim = :token, page_claim_at = :at")
            .condition_expression(
                "pages_sent = :expected AND (attribute_not_exists(page_claim) OR page_claim_at < :cutoff)",
            )
            .expression_attribute_values(":token", s(claim.token.clone()))
            .expression_attribute_values(":at", s(ts(claim.at)))
            .expression_attribute_values(":expected", n(claim.expected_pages_sent))
            .expression_attribute_values(":cutoff", s(ts(claim.lease_cutoff())))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            // The incident as it stands once claimed: the page reports its current counts.
            Ok(out) => incident_from_item(&out.attributes.unwrap_or_default()).map(Claimed::Taken),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let stored = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => failed
                        .item()
                        .filter(|item| !item.is_empty())
                        .map(incident_from_item)
                        .transpose()?,
                    _ => None,
                };
                Ok(match stored {
                    Some(current) if current.pages_sent == claim.expected_pages_sent => {
                        Claimed::Held(current)
                    }
                    current => Claimed::Changed(current),
                })
            }
            Err(e) => Err(sdk_error("claim page", &e)),
        }
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
            tracing::warn!(incident = %Untrusted(&incident.id()), "page sent after its claim expired; another page may follow");
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

/// Summed from the incidents' backlog counters: one item read per incident of the source (and
/// destination), however many objects are missing.
impl BacklogCounter for DynamoDbLedger {
    async fn count_backlog(
        &self,
        source_bucket: &str,
        rule_id: Option<&str>,
        destination_bucket: Option<&str>,
    ) -> Result<u64, LedgerError> {
        let mut total = 0i64;
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(format!("INCIDENT#{source_bucket}")))
                .expression_attribute_values(
                    ":prefix",
                    s(match destination_bucket {
                        Some(destination) => format!("REPLICATION#{destination}#"),
                        None => "REPLICATION#".to_owned(),
                    }),
                )
                .projection_expression("backlog_count, rule_id")
                .set_exclusive_start_key(start.take());
            if let Some(rule) = rule_id {
                request = request
                    .filter_expression("rule_id = :rule")
                    .expression_attribute_values(":rule", s(rule));
            }
            let out = request
                .send()
                .await
                .map_err(|e| sdk_error("count backlog", &e))?;
            total += out
                .items()
                .iter()
                .map(|item| get_n::<i64>(item, "backlog_count").unwrap_or(0))
                .sum::<i64>();
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(total.max(0) as u64),
            }
        }
    }
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

/// Where the markers of an incident's not-tracked events are (and, in a table written before
/// the one-write ledger, every incident's memberships).
pub(super) fn marker_partition(key: &IncidentKey) -> String {
    format!("MEMBERS#{}#{}", key.source_bucket, key.id())
}

pub(super) fn object_item(record: &ObjectRecord, revision: u64, expires_at: DateTime<Utc>) -> Item {
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
        ("revision", n(revision)),
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
        (
            "counted_in",
            (!record.counted_in.is_empty())
                .then(|| AttributeValue::Ss(record.counted_in.iter().cloned().collect())),
        ),
        ("redrive_job", record.redrive_job().map(s)),
        ("redriven_at", record.redriven_at().map(|t| s(ts(t)))),
        ("redrive_failure", record.redrive_failure().map(s)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

/// Read an object item back, with its revision. A record written before `counted_in` existed
/// gets the memberships its timestamps stand for.
pub fn object_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<(ObjectRecord, u64), LedgerError> {
    let required = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(item, &format!("no `{name}`")))
    };
    let required_time = |name: &str| {
        get_time(item, name).ok_or_else(|| corrupt(item, &format!("no valid `{name}`")))
    };
    let counted_in: Option<Memberships> = item
        .get("counted_in")
        .and_then(|v| v.as_ss().ok())
        .map(|set| set.iter().cloned().collect());
    let written_with_memberships = counted_in.is_some();
    let mut record = ObjectRecord {
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
        counted_in: counted_in.unwrap_or_default(),
        redrive: get_s(item, "redrive_job").map(|job| {
            Box::new(RedriveMark {
                job: job.to_owned(),
                redriven_at: get_time(item, "redriven_at"),
                redrive_failure: get_s(item, "redrive_failure").map(str::to_owned),
            })
        }),
    };
    if !written_with_memberships {
        record.derive_counted_in();
    }
    let revision = get_n(item, "revision").ok_or_else(|| corrupt(item, "no `revision`"))?;
    Ok((record, revision))
}

/// Read an incident item back.
pub fn incident_from_item(item: &HashMap<String, AttributeValue>) -> Result<Incident, LedgerError> {
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
        backlog_count: get_n(item, "backlog_count").unwrap_or(0),
        pages_sent: get_n(item, "pages_sent").unwrap_or(0),
        first_page_at: get_time(item, "first_page_at"),
        last_page_at: get_time(item, "last_page_at"),
        event_count_at_last_page: get_n(item, "event_count_at_last_page").unwrap_or(0),
        last_recorded_at: get_time(item, "last_recorded_at"),
    })
}
