//! `replmon migrate`: bring a ledger written by a release before the one-write ledger up to date.
//!
//! That release kept an incident's events as membership items (`MEMBERS#...`, `RECOVERED#...`)
//! and counted them when paging; this one keeps counters on the incident and the memberships in
//! the object records (`counted_in`). Per source bucket in the catalog, the migration:
//! 1. adds each old membership to its object record (a set add: idempotent);
//! 2. counts the memberships, and the objects still missing per incident;
//! 3. sets those counts on each old incident and marks it migrated, in one conditional update.
//!
//! Until then this release counts nothing into an old incident (`LedgerError::NotMigrated`): its
//! events are not written (a record goes in only with its count) and their messages are retried,
//! so the migration's counts are the whole truth when it runs and nothing is counted twice.
//!
//! Resumable: run it again after an interruption; migrated incidents are skipped. It scans the
//! table once first to complete the catalog (as `replmon catalog-rebuild`).

use super::replication::{incident_from_item, object_from_item, LEDGER_SCHEMA};
use super::status::PartitionQuery;
use super::{get_n, get_s, n, s, sdk_error, DynamoDbLedger};
use crate::event::ReplicationEventKind;
use crate::incident::{IncidentCause, IncidentKey};
use crate::ledger::{object_sort_key, LedgerError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeMap;

/// A migration of one table.
pub struct Migration<'a> {
    pub ledger: &'a DynamoDbLedger,
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub source_buckets: usize,
    pub incidents_migrated: usize,
    pub incidents_already_current: usize,
    pub memberships: u64,
    /// Memberships whose object record no longer exists (expired): counted, nothing to mark.
    pub memberships_without_object: u64,
}

impl Migration<'_> {
    pub async fn run(&self) -> Result<MigrationReport, LedgerError> {
        let ledger = self.ledger;
        let mut report = MigrationReport::default();
        // The release before wrote its catalog best effort: list every source first, so that no
        // old incident is left out (and refusing counts) because its source was not catalogued.
        for source in ledger.rebuild_catalog().await?.source_buckets {
            report.source_buckets += 1;
            let incidents = ledger
                .query_all(
                    whole(format!("INCIDENT#{source}")),
                    "read incidents to migrate",
                )
                .await?;
            let mut old: Vec<(IncidentKey, u64, u64)> = Vec::new();
            for item in &incidents {
                if get_s(item, "entity") != Some("incident") {
                    continue;
                }
                if get_n::<u64>(item, "ledger_schema").is_some() {
                    report.incidents_already_current += 1;
                    continue;
                }
                let incident = incident_from_item(item)?;
                let (events, without) = self
                    .mark_members(&incident.key, &members_partition(&incident.key), "MEMBERS")
                    .await?;
                let (recovered, without_r) = self
                    .mark_members(
                        &incident.key,
                        &recovered_partition(&incident.key),
                        "RECOVERED",
                    )
                    .await?;
                report.memberships += events + recovered;
                report.memberships_without_object += without + without_r;
                old.push((incident.key, events, recovered));
            }
            if old.is_empty() {
                continue;
            }
            let backlog = self.backlog_by_incident(&source).await?;
            for (key, events, recovered) in old {
                let missing = backlog.get(&key.id()).copied().unwrap_or(0);
                let migrated = ledger
                    .conditional_update(
                        &key,
                        "SET ledger_schema = :schema, event_count = :events, recovered_count = :recovered, backlog_count = :backlog",
                        "attribute_not_exists(ledger_schema)",
                        vec![
                            (":schema", n(LEDGER_SCHEMA)),
                            (":events", n(events)),
                            (":recovered", n(recovered)),
                            (":backlog", n(missing)),
                        ],
                        "migrate incident",
                    )
                    .await?;
                if migrated {
                    report.incidents_migrated += 1;
                } else {
                    report.incidents_already_current += 1;
                }
            }
        }
        Ok(report)
    }

    /// Add an old membership partition's memberships to their objects; answer how many there
    /// were and how many had no object record left.
    async fn mark_members(
        &self,
        incident: &IncidentKey,
        partition: &str,
        kind: &str,
    ) -> Result<(u64, u64), LedgerError> {
        let ledger = self.ledger;
        let members = ledger
            .query_all(whole(partition.to_owned()), "read memberships to migrate")
            .await?;
        let token = match (&incident.cause, kind) {
            (_, "RECOVERED") => Some(format!("RECOVERED#{}", incident.rule_id)),
            (IncidentCause::Failure(reason), _) => {
                Some(format!("FAILED:{reason}#{}", incident.rule_id))
            }
            (IncidentCause::Late, _) => Some(format!("LATE#{}", incident.rule_id)),
            // Not-tracked memberships are the markers this release still uses, as they are.
            (IncidentCause::NotTracked, _) => None,
        };
        let mut without = 0;
        for member in &members {
            let Some(token) = &token else { continue };
            if get_s(member, "event_name")
                .is_some_and(|name| name == ReplicationEventKind::OperationNotTracked.as_str())
            {
                continue;
            }
            let Some(key) = get_s(member, "key") else {
                continue;
            };
            let sk = object_sort_key(
                &incident.destination_bucket,
                key,
                get_s(member, "version_id"),
            );
            let marked = ledger
                .client
                .update_item()
                .table_name(&ledger.table)
                .key("pk", s(format!("OBJECT#{}", incident.source_bucket)))
                .key("sk", s(sk))
                // A new revision: a writer holding the record as it was cannot put it back
                // without the membership.
                .update_expression("ADD counted_in :token, revision :one")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":token", AttributeValue::Ss(vec![token.clone()]))
                .expression_attribute_values(":one", n(1))
                .send()
                .await;
            match marked {
                Ok(_) => {}
                Err(e)
                    if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                        == Some("ConditionalCheckFailedException") =>
                {
                    without += 1;
                }
                Err(e) => return Err(sdk_error("mark an object's membership", &e)),
            }
        }
        Ok((members.len() as u64, without))
    }

    /// Objects still missing per incident id, from the source's object records.
    async fn backlog_by_incident(
        &self,
        source: &str,
    ) -> Result<BTreeMap<String, i64>, LedgerError> {
        let objects = self
            .ledger
            .query_all(whole(format!("OBJECT#{source}")), "read objects to migrate")
            .await?;
        let mut backlog = BTreeMap::new();
        for item in &objects {
            let (record, _) = object_from_item(item)?;
            if let Some(cause) = record.backlog_cause() {
                *backlog.entry(record.incident(cause).id()).or_insert(0) += 1;
            }
        }
        Ok(backlog)
    }
}

fn members_partition(key: &IncidentKey) -> String {
    format!("MEMBERS#{}#{}", key.source_bucket, key.id())
}

fn recovered_partition(key: &IncidentKey) -> String {
    format!("RECOVERED#{}#{}", key.source_bucket, key.id())
}

/// A whole partition, strongly consistent: the migration reads what it just wrote.
fn whole(pk: String) -> PartitionQuery {
    PartitionQuery {
        pk,
        sort: None,
        consistent: true,
        upper: None,
    }
}
