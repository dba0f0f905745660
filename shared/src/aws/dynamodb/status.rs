//! The report queries (`replmon status` and `backlog`): the catalog lists source buckets and
//! alarms, and each report reads whole partitions with key conditions only (no scan).

use super::canary::{audit_key, record_from_item};
use super::{
    get_s, incident_from_item, object_from_item, s, sdk_error, ts, DynamoDbLedger, Item,
    CATALOG_PARTITION,
};
use crate::alarm::monitor::AlarmStore;
use crate::alarm::AlarmRecord;
use crate::canary::audit::AuditRecord;
use crate::canary::probe::{ProbeRecord, RuleHealth};
use crate::incident::Incident;
use crate::ledger::{LedgerError, ObjectRecord};
use crate::status::{BacklogCursor, BacklogPage, LedgerReader};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

/// Reads in flight at once when a report fans out (incident counts, alarms).
const FAN_OUT: usize = 8;

/// One partition's key condition: the partition and, optionally, a condition on `sk`.
pub(super) struct PartitionQuery {
    pub pk: String,
    /// `begins_with(sk, :v)` or `sk >= :v`, with its value.
    pub sort: Option<(&'static str, String)>,
    /// A strongly consistent read (reports read eventually consistent, at half the cost).
    pub consistent: bool,
    /// With `sk BETWEEN :sk AND :upper`: the range's upper end.
    pub upper: Option<String>,
}

impl DynamoDbLedger {
    /// Every item of a partition matching the query, page after page.
    pub(super) async fn query_all(
        &self,
        query: PartitionQuery,
        operation: &'static str,
    ) -> Result<Vec<Item>, LedgerError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .partition_request(&query, None)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(operation, &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    fn partition_request(
        &self,
        query: &PartitionQuery,
        filter: Option<&str>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(query.pk.clone()));
        request = match &query.sort {
            Some((condition, value)) => request
                .key_condition_expression(format!("pk = :pk AND {condition}"))
                .expression_attribute_values(":sk", s(value.clone())),
            None => request.key_condition_expression("pk = :pk"),
        };
        if let Some(upper) = &query.upper {
            request = request.expression_attribute_values(":upper", s(upper.clone()));
        }
        if query.consistent {
            request = request.consistent_read(true);
        }
        if let Some(filter) = filter {
            request = request.filter_expression(filter);
        }
        request
    }

    /// Records of one type, skipping (and logging) unreadable items: one bad item must not hide
    /// every other from the on-call engineer.
    pub(super) fn readable<T>(
        items: Vec<Item>,
        read: impl Fn(&Item) -> Result<T, LedgerError>,
    ) -> Vec<T> {
        items
            .iter()
            .filter_map(|item| match read(item) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable ledger item");
                    None
                }
            })
            .collect()
    }

    async fn catalog_entries(
        &self,
        prefix: &str,
        attribute: &str,
    ) -> Result<Vec<String>, LedgerError> {
        let items = self
            .query_all(
                PartitionQuery {
                    pk: CATALOG_PARTITION.to_owned(),
                    sort: Some(("begins_with(sk, :sk)", prefix.to_owned())),
                    consistent: false,
                    upper: None,
                },
                "read catalog",
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| get_s(item, attribute).map(str::to_owned))
            .collect())
    }
}

impl LedgerReader for DynamoDbLedger {
    async fn source_buckets(&self) -> Result<Vec<String>, LedgerError> {
        self.catalog_entries("SOURCE#", "source_bucket").await
    }

    async fn alarms(&self) -> Result<Vec<AlarmRecord>, LedgerError> {
        let keys = self.catalog_entries("ALARM#", "alarm_key").await?;
        let found: Vec<Option<(AlarmRecord, u64)>> = stream::iter(keys)
            .map(|key| async move { self.alarm(&key).await })
            .buffered(FAN_OUT)
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .flatten()
            .map(|(alarm, _)| alarm)
            .collect())
    }

    async fn incidents(&self, source_bucket: &str) -> Result<Vec<Incident>, LedgerError> {
        let items = self
            .query_all(
                PartitionQuery {
                    pk: format!("INCIDENT#{source_bucket}"),
                    sort: None,
                    consistent: false,
                    upper: None,
                },
                "read incidents",
            )
            .await?;
        Ok(Self::readable(items, incident_from_item))
    }

    async fn backlog_page(
        &self,
        source_bucket: &str,
        destination_bucket: Option<&str>,
        after: Option<&BacklogCursor>,
        limit: usize,
    ) -> Result<BacklogPage, LedgerError> {
        let pk = format!("OBJECT#{source_bucket}");
        let query = PartitionQuery {
            pk: pk.clone(),
            sort: destination_bucket.map(|d| ("begins_with(sk, :sk)", format!("{d}#"))),
            consistent: false,
            upper: None,
        };
        let limit = limit.max(1);
        let mut objects: Vec<(String, ObjectRecord)> = Vec::new();
        let mut start: Option<Item> = after.map(|cursor| {
            [("pk", s(pk.clone())), ("sk", s(cursor.0.clone()))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        });
        loop {
            let out = self
                .partition_request(&query, Some("#status IN (:failed, :late)"))
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":failed", s("FAILED"))
                .expression_attribute_values(":late", s("LATE"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("read backlog", &e))?;
            let more_pages = out.last_evaluated_key.filter(|k| !k.is_empty());
            let items = out.items.unwrap_or_default();
            let page_len = items.len();
            for (i, item) in items.iter().enumerate() {
                let Some(sk) = get_s(item, "sk") else {
                    continue;
                };
                match object_from_item(item) {
                    Ok((record, _)) => objects.push((sk.to_owned(), record)),
                    Err(error) => tracing::warn!(%error, "skipping an unreadable object record"),
                }
                if objects.len() == limit {
                    // More follow if this page has items left or another page exists.
                    let next = (i + 1 < page_len || more_pages.is_some())
                        .then(|| BacklogCursor(sk.to_owned()));
                    return Ok(BacklogPage {
                        objects: objects.into_iter().map(|(_, o)| o).collect(),
                        next,
                    });
                }
            }
            match more_pages {
                Some(key) => start = Some(key),
                None => {
                    return Ok(BacklogPage {
                        objects: objects.into_iter().map(|(_, o)| o).collect(),
                        next: None,
                    })
                }
            }
        }
    }

    async fn probes_since(
        &self,
        source_bucket: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProbeRecord>, LedgerError> {
        // Probe sort keys start with the put time, so the window is a key condition.
        let items = self
            .query_all(
                PartitionQuery {
                    pk: format!("PROBE#{source_bucket}"),
                    sort: Some(("sk >= :sk", ts(since))),
                    consistent: false,
                    upper: None,
                },
                "read probes",
            )
            .await?;
        Ok(Self::readable(items, record_from_item))
    }

    async fn rule_health(&self, source_bucket: &str) -> Result<Vec<RuleHealth>, LedgerError> {
        let items = self
            .query_all(
                PartitionQuery {
                    pk: format!("CANARY#{source_bucket}"),
                    sort: Some(("begins_with(sk, :sk)", "HEALTH#".to_owned())),
                    consistent: false,
                    upper: None,
                },
                "read canary health",
            )
            .await?;
        Ok(Self::readable(items, record_from_item))
    }

    async fn latest_audit(&self, source_bucket: &str) -> Result<Option<AuditRecord>, LedgerError> {
        let (pk, sk) = audit_key(source_bucket);
        self.get(pk, sk, "read audit")
            .await?
            .map(|item| record_from_item(&item))
            .transpose()
    }

    async fn latest_redrive(
        &self,
        source_bucket: &str,
    ) -> Result<Option<crate::redrive::RedriveRecord>, LedgerError> {
        use crate::redrive::RedriveStore;
        Ok(self.current(source_bucket).await?.map(|(record, _)| record))
    }
}

/// What [`DynamoDbLedger::rebuild_catalog`] listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogRebuild {
    pub source_buckets: Vec<String>,
    pub alarms: Vec<String>,
}

impl DynamoDbLedger {
    /// List every source bucket and alarm the table holds records of in the catalog: once, for
    /// a ledger written before the catalog existed. Scans the table (keys and TTL only).
    pub async fn rebuild_catalog(&self) -> Result<CatalogRebuild, LedgerError> {
        use std::collections::BTreeMap;
        let mut sources: BTreeMap<String, i64> = BTreeMap::new();
        let mut alarms: BTreeMap<String, i64> = BTreeMap::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("pk, expires_at")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("scan for the catalog", &e))?;
            for item in out.items() {
                let Some(pk) = get_s(item, "pk") else {
                    continue;
                };
                let expires = super::get_n::<i64>(item, "expires_at").unwrap_or(0);
                let (map, name) = if let Some(key) = pk.strip_prefix("ALARM#") {
                    (&mut alarms, key)
                } else if let Some(bucket) = ["INCIDENT#", "OBJECT#", "PROBE#", "CANARY#"]
                    .iter()
                    .find_map(|prefix| pk.strip_prefix(prefix))
                {
                    (&mut sources, bucket)
                } else {
                    continue;
                };
                let latest = map.entry(name.to_owned()).or_insert(expires);
                *latest = (*latest).max(expires);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        let at = |epoch: i64| {
            DateTime::from_timestamp(epoch, 0)
                .filter(|t| *t > Utc::now())
                .unwrap_or_else(|| Utc::now() + chrono::Duration::days(90))
        };
        for (bucket, expires) in &sources {
            self.put_catalog(
                format!("SOURCE#{bucket}"),
                ("source_bucket", bucket),
                at(*expires),
            )
            .await?;
        }
        for (key, expires) in &alarms {
            self.put_catalog(format!("ALARM#{key}"), ("alarm_key", key), at(*expires))
                .await?;
        }
        Ok(CatalogRebuild {
            source_buckets: sources.into_keys().collect(),
            alarms: alarms.into_keys().collect(),
        })
    }
}
