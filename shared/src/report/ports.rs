//! What `replmon report` reads beyond `replmon status`: the canary's daily roll-ups, every
//! object record of a source, and the days' audit findings. Each is a bounded set of queries:
//! roll-ups and audit days by key range (one item per rule and day), object records by
//! partition.

use crate::canary::rollup::DailyRollup;
use crate::ledger::{LedgerError, ObjectRecord};
use crate::redrive::RedriveRecord;
use crate::status::LedgerReader;
use chrono::NaiveDate;
use std::future::Future;

/// A finding the canary's audit reported on a day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotedFinding {
    pub severity: String,
    pub id: String,
    pub summary: String,
}

/// The findings of one day (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDay {
    pub day: NaiveDate,
    pub findings: Vec<NotedFinding>,
}

pub trait ReportReader: LedgerReader {
    /// Roll-ups of a source for the days `from..=to`, in day order.
    fn daily_rollups(
        &self,
        source_bucket: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Future<Output = Result<Vec<DailyRollup>, LedgerError>> + Send;

    /// Every object record of a source (failed, late, arrived late, re-driven).
    fn object_records(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<ObjectRecord>, LedgerError>> + Send;

    /// A source's finished re-drives (the latest, running or not, is `latest_redrive`).
    fn redrives(
        &self,
        source_bucket: &str,
    ) -> impl Future<Output = Result<Vec<RedriveRecord>, LedgerError>> + Send;

    /// Audit findings of a source for the days `from..=to`.
    fn audit_days(
        &self,
        source_bucket: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Future<Output = Result<Vec<AuditDay>, LedgerError>> + Send;
}
