//! The report's queries (`replmon report`): the canary's daily roll-ups and the days' audit
//! findings by key range (one item per rule and day, whatever the probe rate), and a source's
//! object records by partition.

use super::canary::{audit_day_key, record_from_item, rollup_key};
use super::redrive::ATTEMPT_PREFIX;
use super::status::PartitionQuery;
use super::{object_from_item, DynamoDbLedger};
use crate::canary::rollup::DailyRollup;
use crate::ledger::{LedgerError, ObjectRecord};
use crate::redrive::RedriveRecord;
use crate::report::{AuditDay, NotedFinding, ReportReader};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::NaiveDate;

/// Sorts after `#` (the separator after the day in a roll-up's sort key).
const AFTER_SEPARATOR: char = '$';

impl ReportReader for DynamoDbLedger {
    async fn daily_rollups(
        &self,
        source_bucket: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyRollup>, LedgerError> {
        let (pk, _) = rollup_key(source_bucket, "", "", from);
        let items = self
            .query_all(
                PartitionQuery {
                    pk,
                    sort: Some(("sk BETWEEN :sk AND :upper", format!("{from}#"))),
                    consistent: false,
                    upper: Some(format!("{to}{AFTER_SEPARATOR}")),
                },
                "read canary daily roll-ups",
            )
            .await?;
        Ok(Self::readable(items, record_from_item))
    }

    async fn object_records(&self, source_bucket: &str) -> Result<Vec<ObjectRecord>, LedgerError> {
        let items = self
            .query_all(
                PartitionQuery {
                    pk: format!("OBJECT#{source_bucket}"),
                    sort: None,
                    consistent: false,
                    upper: None,
                },
                "read object records",
            )
            .await?;
        Ok(Self::readable(items, |item| {
            object_from_item(item).map(|(record, _)| record)
        }))
    }

    async fn redrives(&self, source_bucket: &str) -> Result<Vec<RedriveRecord>, LedgerError> {
        let items = self
            .query_all(
                PartitionQuery {
                    pk: format!("REDRIVE#{source_bucket}"),
                    sort: Some(("begins_with(sk, :sk)", ATTEMPT_PREFIX.to_owned())),
                    consistent: false,
                    upper: None,
                },
                "read finished re-drives",
            )
            .await?;
        Ok(Self::readable(items, record_from_item))
    }

    async fn audit_days(
        &self,
        source_bucket: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<AuditDay>, LedgerError> {
        let (pk, first) = audit_day_key(source_bucket, from);
        let (_, last) = audit_day_key(source_bucket, to);
        let items = self
            .query_all(
                PartitionQuery {
                    pk,
                    sort: Some(("sk BETWEEN :sk AND :upper", first)),
                    consistent: false,
                    upper: Some(last),
                },
                "read audit days",
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let day = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| sk.strip_prefix("AUDIT_DAY#"))
                    .and_then(|day| day.parse().ok())?;
                let findings = match item.get("findings") {
                    Some(AttributeValue::Ss(noted)) => noted
                        .iter()
                        .filter_map(|text| {
                            let (severity, id, summary) =
                                serde_json::from_str::<(String, String, String)>(text).ok()?;
                            Some(NotedFinding {
                                severity,
                                id,
                                summary,
                            })
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                Some(AuditDay { day, findings })
            })
            .collect())
    }
}
