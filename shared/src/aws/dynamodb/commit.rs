//! A commit as one TransactWriteItems: the object records and markers put under their
//! conditions, the incidents' counters moved (created with their first page claim and their
//! source's catalog entry, or added to), with the commit's token as the ClientRequestToken.
//! A cancelled transaction answers, per item, whether its condition held and, when it failed,
//! the stored item (ReturnValuesOnConditionCheckFailure), which is what the next round needs.

use super::replication::{incident_from_item, incident_key, marker_partition, object_from_item};
use super::replication::{object_item, LEDGER_SCHEMA};
use super::{get_s, n, s, sdk_error, ts, DynamoDbLedger, Item, CATALOG_PARTITION};
use crate::incident::{IncidentCause, IncidentKey};
use crate::ledger::{
    Commit, CommitOutcome, IncidentDelta, IncidentMode, LedgerError, StoredIncident, Verdict, Write,
};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

/// The pieces of one update: clauses, condition and values.
struct Expression {
    set: Vec<String>,
    add: Vec<&'static str>,
    condition: Vec<String>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl DynamoDbLedger {
    pub(super) async fn commit_items(&self, commit: &Commit) -> Result<CommitOutcome, LedgerError> {
        let mut items = Vec::with_capacity(commit.writes.len() + 1);
        let mut sources: Vec<&str> = Vec::new();
        for write in &commit.writes {
            let item = match write {
                Write::Object { record, expected } => {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(object_item(
                            record,
                            expected.map_or(1, |r| r + 1),
                            commit.expires_at,
                        )))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        );
                    let put = match expected {
                        Some(revision) => put
                            .condition_expression("revision = :rev")
                            .expression_attribute_values(":rev", n(*revision)),
                        None => put.condition_expression("attribute_not_exists(pk)"),
                    };
                    TransactWriteItem::builder()
                        .put(built(put.build())?)
                        .build()
                }
                Write::Marker { incident, event } => {
                    let mut put = Put::builder()
                        .table_name(&self.table)
                        .item("pk", s(marker_partition(incident)))
                        .item("sk", s(event.id().to_string()))
                        .item("entity", s("member"))
                        .item("event_name", s(event.kind.as_str()))
                        .item("key", s(event.key.clone()))
                        .item("event_time", s(ts(event.event_time)))
                        .item("expires_at", n(commit.expires_at.timestamp()))
                        .condition_expression("attribute_not_exists(pk)");
                    if let Some(version) = &event.version_id {
                        put = put.item("version_id", s(version.clone()));
                    }
                    TransactWriteItem::builder()
                        .put(built(put.build())?)
                        .build()
                }
                Write::Incident { key, delta, mode } => {
                    if matches!(mode, IncidentMode::Create { .. })
                        && !sources.contains(&key.source_bucket.as_str())
                    {
                        sources.push(&key.source_bucket);
                    }
                    let update = self.incident_update(key, delta, mode, commit)?;
                    TransactWriteItem::builder().update(update).build()
                }
            };
            items.push(item);
        }
        // A source with a new incident is listed in the catalog (what reports and the CLI list).
        for source in sources {
            let catalog = Put::builder()
                .table_name(&self.table)
                .item("pk", s(CATALOG_PARTITION))
                .item("sk", s(format!("SOURCE#{source}")))
                .item("entity", s("catalog"))
                .item("source_bucket", s(source))
                .item(
                    "expires_at",
                    n((commit.expires_at + chrono::Duration::days(1)).timestamp()),
                );
            items.push(
                TransactWriteItem::builder()
                    .put(built(catalog.build())?)
                    .build(),
            );
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(&commit.token)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(CommitOutcome::Committed),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(sdk_error("commit", &error));
        };
        let reasons = cancelled.cancellation_reasons();
        let mut busy = false;
        let mut verdicts = Vec::with_capacity(commit.writes.len());
        for (position, reason) in reasons.iter().enumerate() {
            match reason.code() {
                None | Some("None") => {}
                Some("ConditionalCheckFailed") => {}
                Some("TransactionConflict") => busy = true,
                Some("ThrottlingError" | "ProvisionedThroughputExceeded") => {
                    return Err(LedgerError::Unavailable {
                        operation: "commit",
                        detail: format!("{}: {}", code(reason), message(reason)),
                    })
                }
                Some(_) => {
                    return Err(LedgerError::Refused {
                        operation: "commit",
                        detail: format!("{}: {}", code(reason), message(reason)),
                    })
                }
            }
            if let Some(write) = commit.writes.get(position) {
                verdicts.push(verdict(write, reason).unwrap_or_else(Verdict::Unreadable));
            }
        }
        if verdicts.len() != commit.writes.len() {
            return Err(LedgerError::Unavailable {
                operation: "commit",
                detail: format!(
                    "cancelled with {} reasons for {} writes",
                    reasons.len(),
                    commit.writes.len()
                ),
            });
        }
        Ok(CommitOutcome::Cancelled { verdicts, busy })
    }

    /// The incident's update: created with its counts and first page claim, or added to.
    fn incident_update(
        &self,
        key: &IncidentKey,
        delta: &IncidentDelta,
        mode: &IncidentMode,
        commit: &Commit,
    ) -> Result<Update, LedgerError> {
        let mut e = Expression {
            set: vec!["expires_at = :exp".into()],
            add: Vec::new(),
            condition: Vec::new(),
            values: vec![(":exp", n(commit.expires_at.timestamp()))],
        };
        let span = delta.span;
        if span.is_some() {
            e.set.push("last_recorded_at = :now".into());
        }
        match mode {
            IncidentMode::Create { first_page } => {
                identity(key, &mut e);
                e.set.extend(
                    [
                        "opened_at = :now",
                        "pages_sent = :zero",
                        "event_count = :events",
                        "recovered_count = :recovered",
                        "backlog_count = :backlog",
                        "ledger_schema = :schema",
                    ]
                    .map(String::from),
                );
                e.values.push((":zero", n(0)));
                e.values.push((":schema", n(LEDGER_SCHEMA)));
                // An item without `entity` is no incident (a key-only leftover): written anew.
                e.condition.push("attribute_not_exists(entity)".into());
                if let Some((first, last)) = span {
                    e.set.push("first_seen = :first, last_seen = :last".into());
                    e.values.push((":first", s(ts(first))));
                    e.values.push((":last", s(ts(last))));
                }
                if let Some(claim) = first_page {
                    e.set
                        .push("page_claim = :token, page_claim_at = :at".into());
                    e.values.push((":token", s(claim.token.clone())));
                    e.values.push((":at", s(ts(claim.at))));
                }
            }
            IncidentMode::Add {
                lower_first,
                raise_last,
            } => {
                e.add = vec![
                    "event_count :events",
                    "recovered_count :recovered",
                    "backlog_count :backlog",
                ];
                // Never count into an incident of the earlier layout: its counts come from the
                // migration, which would add its members to whatever is here.
                e.condition.push("attribute_exists(ledger_schema)".into());
                if let Some((first, last)) = span {
                    e.values.push((":first", s(ts(first))));
                    e.values.push((":last", s(ts(last))));
                    // Each guess is a condition that stays true under concurrent widening in the
                    // same direction, so a storm's writers do not cancel each other.
                    if *lower_first {
                        e.set.push("first_seen = :first".into());
                        e.condition.push(
                            "(attribute_not_exists(first_seen) OR first_seen >= :first)".into(),
                        );
                    } else {
                        e.set
                            .push("first_seen = if_not_exists(first_seen, :first)".into());
                        e.condition.push(
                            "(attribute_not_exists(first_seen) OR first_seen <= :first)".into(),
                        );
                    }
                    if *raise_last {
                        e.set.push("last_seen = :last".into());
                        e.condition
                            .push("(attribute_not_exists(last_seen) OR last_seen <= :last)".into());
                    } else {
                        e.set
                            .push("last_seen = if_not_exists(last_seen, :last)".into());
                        e.condition
                            .push("(attribute_not_exists(last_seen) OR last_seen >= :last)".into());
                    }
                }
            }
        }
        e.values.extend([
            (":now", s(ts(commit.now))),
            (":events", n(delta.events)),
            (":recovered", n(delta.recovered)),
            (":backlog", n(delta.backlog)),
        ]);
        let mut expression = format!("SET {}", e.set.join(", "));
        if !e.add.is_empty() {
            expression.push_str(&format!(" ADD {}", e.add.join(", ")));
        }
        let (pk, sk) = incident_key(key);
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(&expression)
            .condition_expression(e.condition.join(" AND "))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if matches!(mode, IncidentMode::Create { .. }) {
            update = update
                .expression_attribute_names("#cause", "cause")
                .expression_attribute_names("#state", "state");
        }
        // Only the placeholders the expressions use: DynamoDB refuses unused ones.
        let used = format!("{expression} {}", e.condition.join(" "));
        for (name, value) in e.values {
            if mentions(&used, name) {
                update = update.expression_attribute_values(name, value);
            }
        }
        built(update.build())
    }
}

/// The incident's attributes that never change.
fn identity(key: &IncidentKey, e: &mut Expression) {
    let reason = match &key.cause {
        IncidentCause::Failure(reason) => reason.clone(),
        _ => "-".to_owned(),
    };
    e.set.push(
        "entity = :entity, source_bucket = :src, destination_bucket = :dst, rule_id = :rule, \
         #cause = :cause, kind = :kind, severity = :severity, reason = :reason, #state = :open"
            .into(),
    );
    e.values.extend([
        (":entity", s("incident")),
        (":src", s(key.source_bucket.clone())),
        (":dst", s(key.destination_bucket.clone())),
        (":rule", s(key.rule_id.clone())),
        (":cause", s(key.cause.code())),
        (":kind", s(key.cause.kind())),
        (":severity", s(key.cause.severity().as_str())),
        (":reason", s(reason)),
        (":open", s("OPEN")),
    ]);
}

/// Whether the expression uses the placeholder (not merely a longer one it prefixes).
fn mentions(expression: &str, name: &str) -> bool {
    expression.match_indices(name).any(|(at, _)| {
        !expression[at + name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// What a cancellation reason says about one write.
fn verdict(write: &Write, reason: &CancellationReason) -> Result<Verdict, LedgerError> {
    if reason.code() != Some("ConditionalCheckFailed") {
        return Ok(Verdict::Held);
    }
    let stored: Option<&Item> = reason.item().filter(|item| !item.is_empty());
    Ok(match write {
        Write::Object { .. } => Verdict::Object(stored.map(object_from_item).transpose()?),
        Write::Marker { .. } => Verdict::MarkerExists,
        Write::Incident { .. } => Verdict::Incident(match stored {
            // A key-only leftover is no incident.
            Some(item) if get_s(item, "entity") == Some("incident") => Some(StoredIncident {
                incident: incident_from_item(item)?,
                migrated: item.contains_key("ledger_schema"),
            }),
            _ => None,
        }),
    })
}

fn code(reason: &CancellationReason) -> &str {
    reason.code().unwrap_or("?")
}

fn message(reason: &CancellationReason) -> &str {
    reason.message().unwrap_or("")
}

fn built<T>(result: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, LedgerError> {
    result.map_err(|e| LedgerError::Refused {
        operation: "commit",
        detail: e.to_string(),
    })
}
