//! The canary's records in the ledger table:
//! - probe      `pk=PROBE#<source bucket>`          `sk=<put time>#<destination>#<rule id>`
//! - pending    `pk=PROBE_PENDING#<source bucket>`  same `sk` (a copy, while unresolved or not
//!   yet cleaned up; the next runs read this small partition)
//! - health     `pk=CANARY#<source bucket>`         `sk=HEALTH#<destination>#<rule id>`
//! - run claim  `pk=CANARY#<source bucket>`         `sk=RUN#<run id>`
//! - notice     `pk=CANARY#<source bucket>`         `sk=NOTICE#<finding>`
//! - audit      `pk=CANARY#<source bucket>`         `sk=AUDIT` (the latest findings)
//! - audit day  `pk=CANARY#<source bucket>`         `sk=AUDIT_DAY#<YYYY-MM-DD>` (a string set
//!   of the day's findings, each a JSON `[severity, id, summary]`)
//! - roll-up    `pk=CANARY_DAILY#<source bucket>`   `sk=<YYYY-MM-DD>#<destination>#<rule id>`
//!
//! Probe and health records are stored attribute by attribute from their serde form, so the
//! table stays readable in the console and by `replmon`.

use super::status::PartitionQuery;
use super::{
    corrupt, get_n, n, object_from_item, object_key_of, s, sdk_error, written, DynamoDbLedger, Item,
};
use crate::canary::audit::AuditRecord;
use crate::canary::ports::CanaryStore;
use crate::canary::probe::{ProbeRecord, RuleHealth};
use crate::canary::rollup::DailyRollup;
use crate::ledger::LedgerError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Number, Value};

fn probe_key(probe: &ProbeRecord) -> (String, String) {
    (format!("PROBE#{}", probe.source_bucket), probe.id())
}

pub(super) fn audit_key(source: &str) -> (String, String) {
    (format!("CANARY#{source}"), "AUDIT".to_owned())
}

pub(super) fn rollup_key(
    source: &str,
    destination: &str,
    rule: &str,
    day: NaiveDate,
) -> (String, String) {
    (
        format!("CANARY_DAILY#{source}"),
        format!("{day}#{destination}#{rule}"),
    )
}

pub(super) fn audit_day_key(source: &str, day: NaiveDate) -> (String, String) {
    (format!("CANARY#{source}"), format!("AUDIT_DAY#{day}"))
}

fn health_key(source: &str, destination: &str, rule: &str) -> (String, String) {
    (
        format!("CANARY#{source}"),
        format!("HEALTH#{destination}#{rule}"),
    )
}

/// A JSON value as a DynamoDB attribute (`None` for null, which DynamoDB items leave out).
fn attribute(value: Value) -> Option<AttributeValue> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(number) => AttributeValue::N(number.to_string()),
        Value::String(text) => AttributeValue::S(text),
        Value::Array(items) => AttributeValue::L(items.into_iter().filter_map(attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .filter_map(|(k, v)| Some((k, attribute(v)?)))
                .collect(),
        ),
    })
}

fn json(attribute: &AttributeValue) -> Value {
    match attribute {
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(text) => text
            .parse::<u64>()
            .map(Number::from)
            .ok()
            .or_else(|| text.parse::<i64>().ok().map(Number::from))
            .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
            .map_or(Value::Null, Value::Number),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(json).collect()),
        AttributeValue::M(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
        _ => Value::Null,
    }
}

/// A record's fields as item attributes, beside the keys and bookkeeping attributes.
pub(super) fn record_item<T: Serialize>(
    record: &T,
    (pk, sk): (String, String),
    entity: &str,
    extra: Vec<(&str, AttributeValue)>,
) -> Result<Item, LedgerError> {
    let Ok(Value::Object(fields)) = serde_json::to_value(record) else {
        return Err(LedgerError::Corrupt {
            item: format!("{pk}/{sk}"),
            detail: "the record does not serialize to an object".into(),
        });
    };
    let mut item: Item = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k, attribute(v)?)))
        .collect();
    item.insert("pk".into(), s(pk));
    item.insert("sk".into(), s(sk));
    item.insert("entity".into(), s(entity));
    for (name, value) in extra {
        item.insert(name.into(), value);
    }
    Ok(item)
}

pub(super) fn record_from_item<T: DeserializeOwned>(item: &Item) -> Result<T, LedgerError> {
    let fields: Map<String, Value> = item
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "pk" | "sk" | "entity" | "expires_at" | "revision"
            )
        })
        .map(|(k, v)| (k.clone(), json(v)))
        .collect();
    serde_json::from_value(Value::Object(fields)).map_err(|e| corrupt(item, &e.to_string()))
}

impl DynamoDbLedger {
    /// A record stored attribute by attribute ([`record_item`]), and its revision.
    pub(super) async fn revised_record<T: DeserializeOwned>(
        &self,
        (pk, sk): (String, String),
        operation: &'static str,
    ) -> Result<Option<(T, u64)>, LedgerError> {
        let Some(item) = self.get(pk, sk, operation).await? else {
            return Ok(None);
        };
        let revision = get_n(&item, "revision").ok_or_else(|| corrupt(&item, "no `revision`"))?;
        Ok(Some((record_from_item(&item)?, revision)))
    }

    /// Write a record attribute by attribute if its revision is still `expected`
    /// ([`Self::put_revised`]); `false` when someone wrote first.
    pub(super) async fn put_revised_record<T: Serialize>(
        &self,
        record: &T,
        key: (String, String),
        entity: &str,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
        operation: &'static str,
    ) -> Result<bool, LedgerError> {
        let item = record_item(
            record,
            key,
            entity,
            vec![
                ("revision", n(expected.map_or(1, |r| r + 1))),
                ("expires_at", n(expires_at.timestamp())),
            ],
        )?;
        self.put_revised(item, expected, operation).await
    }
}

impl CanaryStore for DynamoDbLedger {
    async fn claim_run(
        &self,
        source_bucket: &str,
        run_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let item: Item = [
            ("pk", s(format!("CANARY#{source_bucket}"))),
            ("sk", s(format!("RUN#{run_id}"))),
            ("entity", s("canary-run")),
            ("expires_at", n(expires_at.timestamp())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        self.put_revised(item, None, "claim canary run").await
    }

    async fn save_probe(
        &self,
        probe: &ProbeRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let (pk, sk) = probe_key(probe);
        let pending_pk = format!("PROBE_PENDING#{}", probe.source_bucket);
        let extra = || vec![("expires_at", n(expires_at.timestamp()))];
        let item = record_item(probe, (pk, sk.clone()), "probe", extra())?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("save probe", &e))?;
        // The probe record first: a crash between the two writes leaves a pending copy that the
        // next run settles again (idempotently), never a lost probe.
        if probe.unfinished() {
            let item = record_item(probe, (pending_pk, sk), "probe-pending", extra())?;
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| sdk_error("save pending probe", &e))?;
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(pending_pk))
                .key("sk", s(sk))
                .send()
                .await
                .map_err(|e| sdk_error("clear pending probe", &e))?;
        }
        Ok(())
    }

    async fn pending_probes(&self, source_bucket: &str) -> Result<Vec<ProbeRecord>, LedgerError> {
        let query = PartitionQuery {
            pk: format!("PROBE_PENDING#{source_bucket}"),
            sort: None,
            consistent: true,
            upper: None,
        };
        let items = self.query_all(query, "read pending probes").await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                // One unreadable item must not stop every other probe from being checked.
                record_from_item(item)
                    .inspect_err(
                        |error| tracing::warn!(%error, "skipping an unreadable pending probe"),
                    )
                    .ok()
            })
            .collect())
    }

    async fn health(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
    ) -> Result<Option<(RuleHealth, u64)>, LedgerError> {
        let key = health_key(source_bucket, destination_bucket, rule_id);
        self.revised_record(key, "read canary health").await
    }

    async fn put_health(
        &self,
        health: &RuleHealth,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let key = health_key(
            &health.source_bucket,
            &health.destination_bucket,
            &health.rule_id,
        );
        self.catalog_source(&health.source_bucket, expires_at).await;
        self.put_revised_record(
            health,
            key,
            "canary-health",
            expected,
            expires_at,
            "write canary health",
        )
        .await
    }

    async fn claim_notice(
        &self,
        source_bucket: &str,
        finding: &str,
        now: DateTime<Utc>,
        period: chrono::Duration,
    ) -> Result<bool, LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CANARY#{source_bucket}")))
            .item("sk", s(format!("NOTICE#{finding}")))
            .item("entity", s("canary-notice"))
            .item("noticed_at", n(now.timestamp()))
            .item("expires_at", n((now + period).timestamp()))
            .condition_expression("attribute_not_exists(pk) OR noticed_at <= :cutoff")
            .expression_attribute_values(":cutoff", n((now - period).timestamp()))
            .send()
            .await;
        written(result, "claim audit notice")
    }

    async fn release_notice(&self, source_bucket: &str, finding: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("CANARY#{source_bucket}")))
            .key("sk", s(format!("NOTICE#{finding}")))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("release audit notice", &e))
    }

    async fn save_audit(
        &self,
        audit: &AuditRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let item = record_item(
            audit,
            audit_key(&audit.source_bucket),
            "canary-audit",
            vec![("expires_at", n(expires_at.timestamp()))],
        )?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("save audit", &e))
    }

    async fn daily_rollup(
        &self,
        source_bucket: &str,
        destination_bucket: &str,
        rule_id: &str,
        day: NaiveDate,
    ) -> Result<Option<(DailyRollup, u64)>, LedgerError> {
        let key = rollup_key(source_bucket, destination_bucket, rule_id, day);
        self.revised_record(key, "read canary daily roll-up").await
    }

    async fn put_daily_rollup(
        &self,
        rollup: &DailyRollup,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let key = rollup_key(
            &rollup.source_bucket,
            &rollup.destination_bucket,
            &rollup.rule_id,
            rollup.day,
        );
        self.put_revised_record(
            rollup,
            key,
            "canary-rollup",
            expected,
            expires_at,
            "write canary daily roll-up",
        )
        .await
    }

    async fn note_findings(
        &self,
        audit: &AuditRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        if audit.findings.is_empty() {
            return Ok(());
        }
        let (pk, sk) = audit_day_key(&audit.source_bucket, audit.audited_at.date_naive());
        // A JSON triple per finding (ids hold rule ids, which may hold any character); a set
        // without repeats, as DynamoDB requires.
        let findings: Vec<String> = audit
            .findings
            .iter()
            .filter_map(|f| serde_json::to_string(&(f.severity.as_str(), &f.id, &f.summary)).ok())
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("ADD findings :found SET entity = :entity, expires_at = :exp")
            .expression_attribute_values(":found", AttributeValue::Ss(findings))
            .expression_attribute_values(":entity", s("canary-audit-day"))
            .expression_attribute_values(":exp", n(expires_at.timestamp()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("note audit findings", &e))
    }

    async fn hand_over_redrive(&self, hand: &crate::redrive::HandOver) -> Result<(), LedgerError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(super::redrive::hand_over_item(hand)))
            // Keep the latest probe's hand-over when runs race.
            .condition_expression("attribute_not_exists(pk) OR probe_at < :at")
            .expression_attribute_values(":at", s(super::ts(hand.probe_at)))
            .send()
            .await;
        written(result, "hand over a re-drive").map(|_| ())
    }

    async fn replication_failure(
        &self,
        probe: &ProbeRecord,
    ) -> Result<Option<String>, LedgerError> {
        let (pk, sk) = object_key_of(
            &probe.source_bucket,
            &probe.destination_bucket,
            &probe.key,
            probe.version_id.as_deref(),
        );
        let Some(item) = self.get(pk, sk, "read object record").await? else {
            return Ok(None);
        };
        let (record, _) = object_from_item(&item)?;
        Ok(record
            .failed_at
            .map(|_| record.failure_reason.unwrap_or_else(|| "unknown".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_the_round_trip_through_attributes() {
        let mut health = RuleHealth::new("src", "dst", "rule");
        health.consecutive_bad = 3;
        health.counted = vec!["a".into(), "b".into()];
        health.owed.push(crate::canary::probe::OwedPage {
            severity: crate::severity::Severity::High,
            notice: false,
            kind: "canary-slow".into(),
            subject: "s".into(),
            body: "b".into(),
        });
        let item = record_item(
            &health,
            health_key("src", "dst", "rule"),
            "canary-health",
            vec![("revision", n(4))],
        )
        .unwrap();
        assert_eq!(item["consecutive_bad"], AttributeValue::N("3".into()));
        let back: RuleHealth = record_from_item(&item).unwrap();
        assert_eq!(back, health);
    }
}
