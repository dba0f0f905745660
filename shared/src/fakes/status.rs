//! The report queries over the in-memory ledger, with the adapter's order and paging.

use super::InMemoryLedger;
use crate::alarm::AlarmRecord;
use crate::canary::audit::AuditRecord;
use crate::canary::probe::{ProbeRecord, RuleHealth};
use crate::incident::Incident;
use crate::ledger::{LedgerError, ObjectStatus};
use crate::status::{BacklogCursor, BacklogPage, LedgerReader};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

impl LedgerReader for InMemoryLedger {
    async fn source_buckets(&self) -> Result<Vec<String>, LedgerError> {
        let state = self.lock();
        let buckets: BTreeSet<String> = state
            .incidents
            .keys()
            .map(|k| k.source_bucket.clone())
            .chain(
                state
                    .objects
                    .values()
                    .map(|stored| stored.0.source_bucket.clone()),
            )
            .chain(state.canary.probes.keys().map(|(bucket, _)| bucket.clone()))
            .chain(
                state
                    .canary
                    .health
                    .keys()
                    .map(|(bucket, _, _)| bucket.clone()),
            )
            .chain(state.canary.audits.keys().cloned())
            .collect();
        Ok(buckets.into_iter().collect())
    }

    async fn alarms(&self) -> Result<Vec<AlarmRecord>, LedgerError> {
        let mut alarms: Vec<AlarmRecord> = self
            .lock()
            .alarms
            .values()
            .map(|(a, _)| a.clone())
            .collect();
        alarms.sort_by(|a, b| a.alarm_key.cmp(&b.alarm_key));
        Ok(alarms)
    }

    async fn incidents(&self, source_bucket: &str) -> Result<Vec<Incident>, LedgerError> {
        Ok(InMemoryLedger::incidents(self)
            .into_iter()
            .filter(|i| i.key.source_bucket == source_bucket)
            .collect())
    }

    async fn backlog_page(
        &self,
        source_bucket: &str,
        destination_bucket: Option<&str>,
        after: Option<&BacklogCursor>,
        limit: usize,
    ) -> Result<BacklogPage, LedgerError> {
        let mut missing: Vec<(String, _)> = self
            .lock()
            .objects
            .values()
            .map(|(o, _)| &**o)
            .filter(|o| o.source_bucket == source_bucket)
            .filter(|o| destination_bucket.is_none_or(|d| o.destination_bucket == d))
            .filter(|o| matches!(o.status(), ObjectStatus::Failed | ObjectStatus::Late))
            .map(|o| (o.sort_key(), o.clone()))
            .filter(|(sk, _)| after.is_none_or(|a| sk.as_str() > a.0.as_str()))
            .collect();
        missing.sort_by(|a, b| a.0.cmp(&b.0));
        let more = missing.len() > limit;
        missing.truncate(limit.max(1));
        let next = if more {
            missing.last().map(|(sk, _)| BacklogCursor(sk.clone()))
        } else {
            None
        };
        Ok(BacklogPage {
            objects: missing.into_iter().map(|(_, o)| o).collect(),
            next,
        })
    }

    async fn probes_since(
        &self,
        source_bucket: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProbeRecord>, LedgerError> {
        Ok(self
            .lock()
            .canary
            .probes
            .values()
            .filter(|p| p.source_bucket == source_bucket && p.put_at >= since)
            .cloned()
            .collect())
    }

    async fn rule_health(&self, source_bucket: &str) -> Result<Vec<RuleHealth>, LedgerError> {
        let mut health: Vec<RuleHealth> = self
            .lock()
            .canary
            .health
            .iter()
            .filter(|((bucket, _, _), _)| bucket == source_bucket)
            .map(|(_, (h, _))| h.clone())
            .collect();
        health.sort_by(|a, b| {
            (&a.destination_bucket, &a.rule_id).cmp(&(&b.destination_bucket, &b.rule_id))
        });
        Ok(health)
    }

    async fn latest_audit(&self, source_bucket: &str) -> Result<Option<AuditRecord>, LedgerError> {
        Ok(self.lock().canary.audits.get(source_bucket).cloned())
    }

    async fn latest_redrive(
        &self,
        source_bucket: &str,
    ) -> Result<Option<crate::redrive::RedriveRecord>, LedgerError> {
        Ok(self
            .lock()
            .redrives
            .get(source_bucket)
            .map(|(record, _)| record.clone()))
    }
}
