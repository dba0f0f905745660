//! Incident counters: an incident new to this process is created with its first counts, its
//! first page claimed and its source catalogued in one transaction; a known one gets one update
//! per batch that adds to its counters and widens its span. An incident of the layout before the
//! one-write ledger is never counted into (`LedgerError::NotMigrated`).

use super::replication::{incident_from_item, incident_key, LEDGER_SCHEMA};
use super::{
    get_s, get_time, n, s, sdk_error, ts, DynamoDbLedger, CATALOG_PARTITION, MAX_WRITE_ATTEMPTS,
};
use crate::incident::{Incident, IncidentCause, IncidentKey};
use crate::ledger::{IncidentDelta, LedgerError, PageClaim};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use chrono::{DateTime, Utc};
use std::time::Duration as StdDuration;

/// An incident's `first_seen` and `last_seen` as stored.
type StoredSpan = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// At most this many incidents are remembered as existing per process.
const KNOWN_INCIDENTS: usize = 10_000;

impl DynamoDbLedger {
    pub(super) fn knows(&self, cache_key: &str) -> bool {
        self.known_incidents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(cache_key)
    }

    pub(super) fn learn(&self, cache_key: String) {
        let mut known = self
            .known_incidents
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_INCIDENTS {
            known.clear();
        }
        known.insert(cache_key);
    }

    /// The incident's attributes that never change, as update clauses and values.
    pub(super) fn incident_identity(
        incident: &IncidentKey,
    ) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
        let reason = match &incident.cause {
            IncidentCause::Failure(reason) => reason.clone(),
            _ => "-".to_owned(),
        };
        (
            "entity = :entity, source_bucket = :src, destination_bucket = :dst, rule_id = :rule, \
             #cause = :cause, kind = :kind, severity = :severity, reason = :reason, #state = :open",
            vec![
                (":entity", s("incident")),
                (":src", s(incident.source_bucket.clone())),
                (":dst", s(incident.destination_bucket.clone())),
                (":rule", s(incident.rule_id.clone())),
                (":cause", s(incident.cause.code())),
                (":kind", s(incident.cause.kind())),
                (":severity", s(incident.cause.severity().as_str())),
                (":reason", s(reason)),
                (":open", s("OPEN")),
            ],
        )
    }

    /// Create the incident with its first counts (and claim its first page) in one transaction
    /// with its source's catalog entry. `Ok(None)`: it exists already, or is being created.
    pub(super) async fn create_incident(
        &self,
        incident: &IncidentKey,
        delta: &IncidentDelta,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        first_page: Option<&PageClaim>,
    ) -> Result<Option<Incident>, LedgerError> {
        let (pk, sk) = incident_key(incident);
        let (identity, mut values) = Self::incident_identity(incident);
        let mut update = format!(
            "SET {identity}, opened_at = :now, pages_sent = :zero, event_count = :events, \
             recovered_count = :recovered, backlog_count = :backlog, ledger_schema = :schema, \
             expires_at = :exp"
        );
        values.extend([
            (":now", s(ts(now))),
            (":zero", n(0)),
            (":events", n(delta.events)),
            (":recovered", n(delta.recovered)),
            (":backlog", n(delta.backlog)),
            (":schema", n(LEDGER_SCHEMA)),
            (":exp", n(expires_at.timestamp())),
        ]);
        if let Some((first, last)) = delta.span {
            update.push_str(", first_seen = :first, last_seen = :last, last_recorded_at = :now");
            values.extend([(":first", s(ts(first))), (":last", s(ts(last)))]);
        }
        if let Some(claim) = first_page {
            update.push_str(", page_claim = :token, page_claim_at = :at");
            values.extend([(":token", s(claim.token.clone())), (":at", s(ts(claim.at)))]);
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(update)
            .condition_expression("attribute_not_exists(entity)")
            .expression_attribute_names("#cause", "cause")
            .expression_attribute_names("#state", "state")
            .set_expression_attribute_values(Some(
                values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ))
            .build()
            .map_err(|e| LedgerError::Refused {
                operation: "create incident",
                detail: e.to_string(),
            })?;
        let catalog = Put::builder()
            .table_name(&self.table)
            .item("pk", s(CATALOG_PARTITION))
            .item("sk", s(format!("SOURCE#{}", incident.source_bucket)))
            .item("entity", s("catalog"))
            .item("source_bucket", s(incident.source_bucket.clone()))
            .item(
                "expires_at",
                n((expires_at + chrono::Duration::days(1)).timestamp()),
            )
            .build()
            .map_err(|e| LedgerError::Refused {
                operation: "create incident",
                detail: e.to_string(),
            })?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().put(catalog).build())
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(error) => {
                // It exists already, or another invocation is creating it (or another incident
                // of the same source) right now: the single-item update counts into it, and
                // creates it if it is still missing.
                let exists = error
                    .as_service_error()
                    .and_then(|e| match e {
                        TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                    .is_some_and(|canceled| {
                        // The incident's own reason, or a conflict on the catalog entry that
                        // another incident of the source is writing at the same moment.
                        canceled.cancellation_reasons().iter().any(|r| {
                            matches!(
                                r.code(),
                                Some("ConditionalCheckFailed" | "TransactionConflict")
                            )
                        })
                    });
                if exists {
                    return Ok(None);
                }
                return Err(sdk_error("create incident", &error));
            }
        }
        let mut created = crate::incident::Incident {
            key: incident.clone(),
            opened_at: now,
            first_seen: delta.span.map(|(first, _)| first),
            last_seen: delta.span.map(|(_, last)| last),
            event_count: delta.events,
            recovered_count: delta.recovered,
            backlog_count: delta.backlog,
            pages_sent: 0,
            last_page_at: None,
            event_count_at_last_page: 0,
            last_recorded_at: None,
        };
        if delta.span.is_some() {
            created.last_recorded_at = Some(now);
        }
        Ok(Some(created))
    }

    /// Add the batch's counts to an incident and widen its span: one update, unless the batch
    /// is older than the span (out-of-order delivery), then one more per concurrent change.
    pub(super) async fn update_counts(
        &self,
        incident: &IncidentKey,
        delta: &IncidentDelta,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Incident, LedgerError> {
        let (pk, sk) = incident_key(incident);
        // The stored span when the optimistic form's condition failed.
        let mut stored: Option<StoredSpan> = None;
        for attempt in 0..MAX_WRITE_ATTEMPTS {
            let (identity, mut values) = Self::incident_identity(incident);
            let mut update = format!(
                "SET {identity}, opened_at = if_not_exists(opened_at, :now), \
                 pages_sent = if_not_exists(pages_sent, :zero), expires_at = :exp, \
                 ledger_schema = if_not_exists(ledger_schema, :schema)"
            );
            values.extend([
                (":now", s(ts(now))),
                (":zero", n(0)),
                (":exp", n(expires_at.timestamp())),
                (":events", n(delta.events)),
                (":recovered", n(delta.recovered)),
                (":backlog", n(delta.backlog)),
                (":schema", n(LEDGER_SCHEMA)),
            ]);
            // Never count into an incident of the earlier layout: its counts come from the
            // migration, which would add its members to whatever is here.
            // An item without `entity` is no incident yet (moto leaves a key-only item when a
            // transaction fails half-way): it is written as a new one.
            let current = "(attribute_not_exists(entity) OR attribute_exists(ledger_schema))";
            let mut condition = current.to_owned();
            if let Some((first, last)) = delta.span {
                update.push_str(", last_recorded_at = :now");
                match &stored {
                    None => {
                        // The usual case: the batch is within or after the stored span.
                        update.push_str(
                            ", first_seen = if_not_exists(first_seen, :first), last_seen = :last",
                        );
                        condition.push_str(
                            " AND (attribute_not_exists(entity) OR ((attribute_not_exists(first_seen) OR first_seen <= :first) \
                             AND (attribute_not_exists(last_seen) OR last_seen <= :last)))",
                        );
                        values.extend([(":first", s(ts(first))), (":last", s(ts(last)))]);
                    }
                    Some((old_first, old_last)) => {
                        let new_first = old_first.map_or(first, |t| t.min(first));
                        let new_last = old_last.map_or(last, |t| t.max(last));
                        update.push_str(", first_seen = :first, last_seen = :last");
                        values.extend([(":first", s(ts(new_first))), (":last", s(ts(new_last)))]);
                        let mut guard = Vec::new();
                        for (name, old, placeholder) in [
                            ("first_seen", old_first, ":old_first"),
                            ("last_seen", old_last, ":old_last"),
                        ] {
                            match old {
                                Some(t) => {
                                    guard.push(format!("{name} = {placeholder}"));
                                    values.push((placeholder, s(ts(*t))));
                                }
                                None => guard.push(format!("attribute_not_exists({name})")),
                            }
                        }
                        condition = format!("{current} AND {}", guard.join(" AND "));
                    }
                }
            }
            update.push_str(
                " ADD event_count :events, recovered_count :recovered, backlog_count :backlog",
            );
            let request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk.clone()))
                .key("sk", s(sk.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .expression_attribute_names("#cause", "cause")
                .expression_attribute_names("#state", "state")
                .set_expression_attribute_values(Some(
                    values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                ))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            match request.send().await {
                Ok(out) => return incident_from_item(&out.attributes.unwrap_or_default()),
                Err(error) => match error.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        let old = failed.item().cloned().unwrap_or_default();
                        if get_s(&old, "entity") == Some("incident")
                            && !old.contains_key("ledger_schema")
                        {
                            return Err(LedgerError::NotMigrated {
                                incident: incident.id(),
                            });
                        }
                        stored = Some((get_time(&old, "first_seen"), get_time(&old, "last_seen")));
                        if attempt > 0 {
                            tokio::time::sleep(StdDuration::from_millis(
                                5 * 2u64.pow(attempt.min(6)),
                            ))
                            .await;
                        }
                    }
                    _ => return Err(sdk_error("update incident counts", &error)),
                },
            }
        }
        Err(LedgerError::Unavailable {
            operation: "update incident counts",
            detail: format!("its span still changing after {MAX_WRITE_ATTEMPTS} attempts"),
        })
    }
}
