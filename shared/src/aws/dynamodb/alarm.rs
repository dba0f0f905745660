//! Alarm records: `pk=ALARM#<account>#<region>#<alarm name>`, `sk=STATE`.

use super::{corrupt, get_n, get_s, get_time, n, s, ts, DynamoDbLedger, Item};
use crate::alarm::monitor::AlarmStore;
use crate::alarm::{AlarmNotification, AlarmRecord, AlarmState};
use crate::ledger::LedgerError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

/// Alarm records: `pk=ALARM#<account>#<region>#<alarm name>`, `sk=STATE`.
impl AlarmStore for DynamoDbLedger {
    async fn alarm(&self, alarm_key: &str) -> Result<Option<(AlarmRecord, u64)>, LedgerError> {
        self.get(format!("ALARM#{alarm_key}"), "STATE".into(), "read alarm")
            .await?
            .map(|item| alarm_from_item(&item))
            .transpose()
    }

    async fn put_alarm(
        &self,
        record: &AlarmRecord,
        expected: Option<u64>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        self.catalog(
            format!("ALARM#{}", record.alarm_key),
            ("alarm_key", &record.alarm_key),
            expires_at,
        )
        .await;
        let mut item: Item = [
            ("pk", s(format!("ALARM#{}", record.alarm_key))),
            ("sk", s("STATE")),
            ("entity", s("alarm")),
            ("alarm_name", s(record.alarm_name.clone())),
            ("state", s(record.state.as_str())),
            ("state_time", s(ts(record.state_time))),
            ("revision", n(expected.map_or(1, |r| r + 1))),
            ("expires_at", n(expires_at.timestamp())),
            (
                "transitions",
                AttributeValue::L(record.transitions.iter().map(|t| s(ts(*t))).collect()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(t) = record.incident_opened_at {
            item.insert("incident_opened_at".into(), s(ts(t)));
        }
        if let Some(t) = record.flapping_since {
            item.insert("flapping_since".into(), s(ts(t)));
        }
        if let Some(pending) = record.pending {
            item.insert("pending_notification".into(), s(pending.code()));
        }
        if let Some(t) = record.pending_since {
            item.insert("pending_since".into(), s(ts(t)));
        }
        self.put_revised(item, expected, "write alarm").await
    }
}

/// Read an alarm item back, with its revision.
pub fn alarm_from_item(item: &Item) -> Result<(AlarmRecord, u64), LedgerError> {
    let text = |name: &str| {
        get_s(item, name)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(item, &format!("no `{name}`")))
    };
    let pk = text("pk")?;
    let record = AlarmRecord {
        alarm_key: pk.strip_prefix("ALARM#").unwrap_or(&pk).to_owned(),
        alarm_name: text("alarm_name")?,
        state: AlarmState::parse(&text("state")?)
            .ok_or_else(|| corrupt(item, "unknown `state`"))?,
        state_time: get_time(item, "state_time")
            .ok_or_else(|| corrupt(item, "no valid `state_time`"))?,
        incident_opened_at: get_time(item, "incident_opened_at"),
        transitions: item
            .get("transitions")
            .and_then(|v| v.as_l().ok())
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_s().ok())
                    .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .collect()
            })
            .unwrap_or_default(),
        flapping_since: get_time(item, "flapping_since"),
        pending: get_s(item, "pending_notification").and_then(AlarmNotification::parse),
        pending_since: get_time(item, "pending_since"),
    };
    let revision = get_n(item, "revision").ok_or_else(|| corrupt(item, "no `revision`"))?;
    Ok((record, revision))
}
