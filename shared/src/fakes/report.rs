//! The report's queries over the in-memory ledger: roll-ups and audit days by day range (the
//! adapter's key order), object records by source.

use super::InMemoryLedger;
use crate::canary::rollup::DailyRollup;
use crate::ledger::{LedgerError, ObjectRecord};
use crate::redrive::RedriveRecord;
use crate::report::{AuditDay, ReportReader};
use chrono::NaiveDate;

impl ReportReader for InMemoryLedger {
    async fn daily_rollups(
        &self,
        source_bucket: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyRollup>, LedgerError> {
        Ok(self
            .lock()
            .canary
            .rollups
            .iter()
            .filter(|((source, day, _, _), _)| source == source_bucket && (from..=to).contains(day))
            .map(|(_, (rollup, _))| rollup.clone())
            .collect())
    }

    async fn object_records(&self, source_bucket: &str) -> Result<Vec<ObjectRecord>, LedgerError> {
        let mut records: Vec<ObjectRecord> = self
            .lock()
            .objects
            .values()
            .filter(|(record, _)| record.source_bucket == source_bucket)
            .map(|(record, _)| ObjectRecord::clone(record))
            .collect();
        records.sort_by(|a, b| {
            (&a.destination_bucket, &a.key, &a.version_id).cmp(&(
                &b.destination_bucket,
                &b.key,
                &b.version_id,
            ))
        });
        Ok(records)
    }

    async fn redrives(&self, source_bucket: &str) -> Result<Vec<RedriveRecord>, LedgerError> {
        Ok(self
            .lock()
            .redrive_history
            .iter()
            .filter(|((source, _), _)| source == source_bucket)
            .map(|(_, record)| record.clone())
            .collect())
    }

    async fn audit_days(
        &self,
        source_bucket: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<AuditDay>, LedgerError> {
        Ok(self
            .lock()
            .canary
            .audit_days
            .iter()
            .filter(|((source, day), _)| source == source_bucket && (from..=to).contains(day))
            .map(|((_, day), findings)| AuditDay {
                day: *day,
                findings: findings.iter().cloned().collect(),
            })
            .collect())
    }
}
