//! CloudWatch alarm state changes: parsing (EventBridge, SNS alarm actions, Lambda alarm actions)
//! and the per-alarm state machine that opens, pages, recovers and stops flapping.
//!
//! `aws_lambda_events` does not model metric-math or composite alarms, so the shapes are ours.

use crate::envelope::{self, Delivery, EventHeader};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

mod decision;
pub mod monitor;
mod pending;
pub use decision::{decide, AlarmDecision, AlarmNotification, AlarmRecord, FlapRule};

/// An alarm's state value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "OK" => Some(AlarmState::Ok),
            "ALARM" => Some(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric (or metric-math expression) an alarm watches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlarmMetric {
    pub id: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dimensions: BTreeMap<String, String>,
    pub period_seconds: Option<u32>,
    pub stat: Option<String>,
    pub expression: Option<String>,
    pub label: Option<String>,
    pub return_data: bool,
}

/// How the change reached the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmDelivery {
    EventBridge,
    /// CloudWatch alarm action -> SNS topic -> this function.
    Sns,
    /// CloudWatch alarm action invoking the function directly.
    LambdaAction,
}

/// One alarm state change.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmChange {
    pub alarm_name: String,
    pub alarm_arn: Option<String>,
    pub account: String,
    pub region: String,
    pub state: AlarmState,
    pub previous_state: Option<AlarmState>,
    pub reason: String,
    pub state_time: DateTime<Utc>,
    pub metrics: Vec<AlarmMetric>,
    pub threshold: Option<f64>,
    /// Composite alarms: the rule, and the alarms that triggered this change.
    pub composite_rule: Option<String>,
    pub triggering_alarms: Vec<String>,
    pub delivery: AlarmDelivery,
    /// Problems with optional parts (e.g. `reasonData` that is not JSON): logged, not fatal.
    pub warnings: Vec<String>,
}

impl AlarmChange {
    /// Stable identity of the alarm across deliveries.
    pub fn alarm_key(&self) -> String {
        format!("{}#{}#{}", self.account, self.region, self.alarm_name)
    }

    /// The metric that drives the alarm: the data-returning one, else the first.
    pub fn primary_metric(&self) -> Option<&AlarmMetric> {
        self.metrics
            .iter()
            .find(|m| m.return_data)
            .or_else(|| self.metrics.first())
    }

    /// The S3 replication pair a replication alarm watches, from its dimensions.
    pub fn replication_dimensions(&self) -> Option<(String, Option<String>, Option<String>)> {
        self.metrics.iter().find_map(|m| {
            let is_s3 = m.namespace.as_deref() == Some("AWS/S3")
                && m.name
                    .as_deref()
                    .is_some_and(|n| REPLICATION_METRICS.contains(&n));
            let source = m.dimensions.get("SourceBucket")?;
            is_s3.then(|| {
                (
                    source.clone(),
                    m.dimensions.get("RuleId").cloned(),
                    m.dimensions.get("DestinationBucket").cloned(),
                )
            })
        })
    }

    /// Whether the alarm watches a replication metric (S3, DynamoDB global tables, Aurora
    /// global databases, AWS Backup copy jobs).
    pub fn is_replication_alarm(&self) -> bool {
        self.metrics.iter().any(|m| {
            matches!(
                (m.namespace.as_deref(), m.name.as_deref()),
                (Some("AWS/S3"), Some(name)) if REPLICATION_METRICS.contains(&name)
            ) || matches!(
                (m.namespace.as_deref(), m.name.as_deref()),
                (Some("AWS/DynamoDB"), Some("ReplicationLatency"))
                    | (Some("AWS/RDS"), Some("AuroraGlobalDBReplicationLag"))
                    | (Some("AWS/Backup"), Some("NumberOfCopyJobsFailed"))
            )
        })
    }
}

/// S3 replication metrics (namespace `AWS/S3`).
pub const REPLICATION_METRICS: [&str; 4] = [
    "ReplicationLatency",
    "OperationsFailedReplication",
    "OperationsPendingReplication",
    "BytesPendingReplication",
];

/// What a payload turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmInput {
    Change(Box<AlarmChange>),
    /// Not an alarm state change (another EventBridge detail-type or source): acknowledged.
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmParseError {
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is neither an EventBridge event, an SNS event nor an alarm action")]
    UnknownShape,
    #[error("alarm event has no `{0}`")]
    Missing(&'static str),
    #[error("alarm event field `{field}` has an unexpected value {value:?}")]
    Invalid { field: &'static str, value: String },
}

/// Parse a payload into its alarm changes (an SNS event may carry several).
pub fn parse_payload(
    text: &str,
) -> Result<Vec<Result<AlarmInput, AlarmParseError>>, AlarmParseError> {
    parse_messages(text).map(|(_, inputs)| inputs.into_iter().map(|(_, input)| input).collect())
}

/// Parse a payload into its messages (ids as the delivery names them) and their alarm changes:
/// an EventBridge event, an SNS or SQS event of alarm-action notifications, or a Lambda alarm
/// action. The envelope ([`crate::envelope`]) says which; this reads the bodies.
pub fn parse_messages(text: &str) -> Result<AlarmMessages, AlarmParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| AlarmParseError::InvalidJson(e.to_string()))?;
    let (delivery, envelopes) = envelope::open(text).map_err(|_| AlarmParseError::UnknownShape)?;
    let inputs = match delivery {
        Delivery::Sns | Delivery::Sqs => envelopes
            .into_iter()
            .map(|message| {
                let input = notification(delivery, message.body);
                (message.id, input)
            })
            .collect(),
        Delivery::EventBridge => envelopes
            .into_iter()
            .map(|message| {
                let input = match (&message.event, &message.body) {
                    (Some(header), Ok(detail)) => parse_eventbridge(header, detail),
                    _ => Err(AlarmParseError::Missing("detail")),
                };
                (message.id, input)
            })
            .collect(),
        // Records that are neither SNS nor SQS records: each is an unreadable message.
        Delivery::Direct if value.get("Records").is_some_and(Value::is_array) => value
            .get("Records")
            .and_then(Value::as_array)
            .map(|records| {
                records
                    .iter()
                    .map(|_| (String::new(), Err(AlarmParseError::Missing("Sns.Message"))))
                    .collect()
            })
            .unwrap_or_default(),
        Delivery::Direct if value.get("alarmData").is_some() => vec![(
            "direct".to_owned(),
            parse_lambda_action(&value).map(|c| AlarmInput::Change(Box::new(c))),
        )],
        Delivery::Direct if value.get("AlarmName").is_some() => vec![(
            "direct".to_owned(),
            parse_sns_alarm(&value).map(|c| AlarmInput::Change(Box::new(c))),
        )],
        Delivery::Direct => return Err(AlarmParseError::UnknownShape),
    };
    Ok((delivery, inputs))
}

/// A payload's delivery and, per message, its id and what it holds.
pub type AlarmMessages = (Delivery, Vec<(String, Result<AlarmInput, AlarmParseError>)>);

/// The alarm-action notification an SNS message (or an SQS body) holds; through SQS it may still
/// be wrapped in the SNS notification around it.
fn notification(
    delivery: Delivery,
    body: Result<String, String>,
) -> Result<AlarmInput, AlarmParseError> {
    let field = if delivery == Delivery::Sqs {
        "body"
    } else {
        "Sns.Message"
    };
    let body = body.map_err(|_| AlarmParseError::Missing(field))?;
    let mut message: Value = serde_json::from_str(&body)
        .map_err(|e| AlarmParseError::InvalidJson(format!("{field}: {e}")))?;
    if message.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = message
            .get("Message")
            .and_then(Value::as_str)
            .ok_or(AlarmParseError::Missing("Message"))?;
        message = serde_json::from_str(inner)
            .map_err(|e| AlarmParseError::InvalidJson(format!("Message: {e}")))?;
    }
    parse_sns_alarm(&message).map(|c| AlarmInput::Change(Box::new(c)))
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn parse_eventbridge(header: &EventHeader, detail: &str) -> Result<AlarmInput, AlarmParseError> {
    let (detail_type, source) = (header.detail_type.as_str(), header.source.as_str());
    if detail_type != "CloudWatch Alarm State Change" || source != "aws.cloudwatch" {
        return Ok(AlarmInput::Ignored(format!(
            "EventBridge event {detail_type:?} from {source:?}"
        )));
    }
    let detail: Value = serde_json::from_str(detail)
        .map_err(|e| AlarmParseError::InvalidJson(format!("detail: {e}")))?;
    let change = parse_alarm_detail(
        &detail,
        header.resources.first().cloned(),
        header.account.clone(),
        header.region.clone(),
        AlarmDelivery::EventBridge,
    )?;
    Ok(AlarmInput::Change(Box::new(change)))
}

fn parse_lambda_action(value: &Value) -> Result<AlarmChange, AlarmParseError> {
    let detail = value
        .get("alarmData")
        .ok_or(AlarmParseError::Missing("alarmData"))?;
    parse_alarm_detail(
        detail,
        text(value, "/alarmArn").map(str::to_owned),
        text(value, "/accountId").map(str::to_owned),
        text(value, "/region").map(str::to_owned),
        AlarmDelivery::LambdaAction,
    )
}

/// The `detail` of an EventBridge event, or the `alarmData` of a Lambda alarm action.
fn parse_alarm_detail(
    detail: &Value,
    arn: Option<String>,
    account: Option<String>,
    region: Option<String>,
    delivery: AlarmDelivery,
) -> Result<AlarmChange, AlarmParseError> {
    let alarm_name = text(detail, "/alarmName")
        .ok_or(AlarmParseError::Missing("alarmName"))?
        .to_owned();
    let state = detail
        .get("state")
        .ok_or(AlarmParseError::Missing("state"))?;
    let state_value = text(state, "/value").ok_or(AlarmParseError::Missing("state.value"))?;
    let state_value = AlarmState::parse(state_value).ok_or_else(|| AlarmParseError::Invalid {
        field: "state.value",
        value: state_value.to_owned(),
    })?;
    let timestamp = text(state, "/timestamp").ok_or(AlarmParseError::Missing("state.timestamp"))?;
    let state_time = parse_alarm_time(timestamp).ok_or_else(|| AlarmParseError::Invalid {
        field: "state.timestamp",
        value: timestamp.to_owned(),
    })?;
    let previous_state = text(detail, "/previousState/value").and_then(AlarmState::parse);
    let mut warnings = Vec::new();
    let mut triggering_alarms = Vec::new();
    if let Some(reason_data) = text(state, "/reasonData") {
        match serde_json::from_str::<Value>(reason_data) {
            Ok(data) => {
                if let Some(alarms) = data.get("triggeringAlarms").and_then(Value::as_array) {
                    triggering_alarms = alarms
                        .iter()
                        .filter_map(|a| a.get("arn").and_then(Value::as_str))
                        .map(|arn| arn.rsplit(':').next().unwrap_or(arn).to_owned())
                        .collect();
                }
            }
            Err(e) => warnings.push(format!("state.reasonData is not valid JSON ({e}); ignored")),
        }
    }
    let configuration = detail.get("configuration");
    let metrics = configuration
        .and_then(|c| c.get("metrics"))
        .and_then(Value::as_array)
        .map(|list| list.iter().map(parse_eventbridge_metric).collect())
        .unwrap_or_default();
    checked_origin(AlarmChange {
        alarm_name,
        account: account
            .or_else(|| arn_field(arn.as_deref(), 4))
            .unwrap_or_default(),
        region: region
            .or_else(|| arn_field(arn.as_deref(), 3))
            .unwrap_or_default(),
        alarm_arn: arn,
        state: state_value,
        previous_state,
        reason: text(state, "/reason").unwrap_or("").to_owned(),
        state_time,
        metrics,
        threshold: None,
        composite_rule: configuration
            .and_then(|c| text(c, "/alarmRule"))
            .map(str::to_owned),
        triggering_alarms,
        delivery,
        warnings,
    })
}

#[derive(Deserialize, Default)]
struct MetricStatWire {
    metric: Option<MetricWire>,
    period: Option<u32>,
    stat: Option<String>,
}

#[derive(Deserialize, Default)]
struct MetricWire {
    namespace: Option<String>,
    name: Option<String>,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
}

fn parse_eventbridge_metric(value: &Value) -> AlarmMetric {
    let stat: MetricStatWire = value
        .get("metricStat")
        .and_then(|m| MetricStatWire::deserialize(m).ok())
        .unwrap_or_default();
    let metric = stat.metric.unwrap_or_default();
    AlarmMetric {
        id: text(value, "/id").unwrap_or("m1").to_owned(),
        namespace: metric.namespace,
        name: metric.name,
        dimensions: metric.dimensions,
        period_seconds: stat.period,
        stat: stat.stat,
        expression: text(value, "/expression").map(str::to_owned),
        label: text(value, "/label").map(str::to_owned),
        return_data: value
            .get("returnData")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    }
}

/// The JSON CloudWatch publishes to an SNS alarm action.
fn parse_sns_alarm(value: &Value) -> Result<AlarmChange, AlarmParseError> {
    let alarm_name = text(value, "/AlarmName")
        .ok_or(AlarmParseError::Missing("AlarmName"))?
        .to_owned();
    let new_state =
        text(value, "/NewStateValue").ok_or(AlarmParseError::Missing("NewStateValue"))?;
    let state = AlarmState::parse(new_state).ok_or_else(|| AlarmParseError::Invalid {
        field: "NewStateValue",
        value: new_state.to_owned(),
    })?;
    let timestamp =
        text(value, "/StateChangeTime").ok_or(AlarmParseError::Missing("StateChangeTime"))?;
    let state_time = parse_alarm_time(timestamp).ok_or_else(|| AlarmParseError::Invalid {
        field: "StateChangeTime",
        value: timestamp.to_owned(),
    })?;
    let arn = text(value, "/AlarmArn").map(str::to_owned);
    let trigger = value.get("Trigger");
    let mut metrics = Vec::new();
    if let Some(trigger) = trigger {
        if let Some(list) = trigger.get("Metrics").and_then(Value::as_array) {
            metrics = list.iter().map(parse_sns_metric).collect();
        } else if trigger.get("MetricName").is_some() {
            metrics.push(AlarmMetric {
                id: "m1".into(),
                namespace: text(trigger, "/Namespace").map(str::to_owned),
                name: text(trigger, "/MetricName").map(str::to_owned),
                dimensions: sns_dimensions(trigger.get("Dimensions")),
                period_seconds: trigger
                    .get("Period")
                    .and_then(Value::as_u64)
                    // Checked: a period no alarm can have is unknown, not wrapped into another.
                    .and_then(|p| u32::try_from(p).ok()),
                stat: text(trigger, "/Statistic")
                    .or_else(|| text(trigger, "/ExtendedStatistic"))
                    .map(sns_statistic),
                expression: None,
                label: None,
                return_data: true,
            });
        }
    }
    checked_origin(AlarmChange {
        alarm_name,
        account: text(value, "/AWSAccountId")
            .map(str::to_owned)
            .or_else(|| arn_field(arn.as_deref(), 4))
            .unwrap_or_default(),
        region: arn_field(arn.as_deref(), 3).unwrap_or_default(),
        alarm_arn: arn,
        state,
        previous_state: text(value, "/OldStateValue").and_then(AlarmState::parse),
        reason: text(value, "/NewStateReason").unwrap_or("").to_owned(),
        state_time,
        metrics,
        threshold: trigger
            .and_then(|t| t.get("Threshold"))
            .and_then(Value::as_f64),
        composite_rule: None,
        triggering_alarms: Vec::new(),
        delivery: AlarmDelivery::Sns,
        warnings: Vec::new(),
    })
}

fn parse_sns_metric(value: &Value) -> AlarmMetric {
    let stat = value.get("MetricStat");
    let metric = stat.and_then(|s| s.get("Metric"));
    AlarmMetric {
        id: text(value, "/Id").unwrap_or("m1").to_owned(),
        namespace: metric
            .and_then(|m| text(m, "/Namespace"))
            .map(str::to_owned),
        name: metric
            .and_then(|m| text(m, "/MetricName"))
            .map(str::to_owned),
        dimensions: sns_dimensions(metric.and_then(|m| m.get("Dimensions"))),
        period_seconds: stat
            .and_then(|s| s.get("Period"))
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
        stat: stat.and_then(|s| text(s, "/Stat")).map(str::to_owned),
        expression: text(value, "/Expression").map(str::to_owned),
        label: text(value, "/Label").map(str::to_owned),
        return_data: value
            .get("ReturnData")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    }
}

/// SNS alarm JSON lists dimensions as `[{"name": .., "value": ..}]` (either case).
fn sns_dimensions(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|d| {
                    let name = text(d, "/name").or_else(|| text(d, "/Name"))?;
                    let value = text(d, "/value").or_else(|| text(d, "/Value"))?;
                    Some((name.to_owned(), value.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// SNS alarm JSON spells statistics in capitals (`MAXIMUM`); the API wants `Maximum`.
fn sns_statistic(stat: &str) -> String {
    match stat {
        "SAMPLE_COUNT" => "SampleCount".to_owned(),
        "AVERAGE" => "Average".to_owned(),
        "SUM" => "Sum".to_owned(),
        "MINIMUM" => "Minimum".to_owned(),
        "MAXIMUM" => "Maximum".to_owned(),
        other => other.to_owned(),
    }
}

/// The account and region name the alarm's record (`<account>#<region>#<name>`): when given, they
/// must be an account ID and a region, so no `#` in them can make two alarms share a record.
fn checked_origin(change: AlarmChange) -> Result<AlarmChange, AlarmParseError> {
    if !change.account.is_empty() {
        crate::names::account_id("account", &change.account).map_err(|_| {
            AlarmParseError::Invalid {
                field: "account",
                value: crate::delivery::text::untrusted(&change.account),
            }
        })?;
    }
    if !change.region.is_empty() {
        crate::names::region("region", &change.region).map_err(|_| AlarmParseError::Invalid {
            field: "region",
            value: crate::delivery::text::untrusted(&change.region),
        })?;
    }
    Ok(change)
}

/// A field of an ARN (`arn:partition:service:region:account:...`): 3 is the region, 4 the account.
fn arn_field(arn: Option<&str>, index: usize) -> Option<String> {
    arn.and_then(|a| a.split(':').nth(index))
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
}

/// `2019-10-01T13:56:40.987+0000` (CloudWatch) or RFC 3339.
pub fn parse_alarm_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod robustness {
    //! Bad input never panics: arbitrary text, and real alarm events cut or corrupted at random.
    use super::*;
    use proptest::prelude::*;

    const EVENTBRIDGE: &str = include_str!("../../../events/alarm/composite-alarm.json");
    const SNS: &str = include_str!("../../../events/alarm/sns-alarm.json");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text(text in ".{0,400}") {
            let _ = parse_payload(&text);
        }

        #[test]
        fn truncated_or_corrupted_events(which in 0usize..2, at in 0.0f64..1.0, byte in 0u8..128, cut in proptest::bool::ANY) {
            let mut bytes = [EVENTBRIDGE, SNS][which].as_bytes().to_vec();
            let index = ((bytes.len() - 1) as f64 * at) as usize;
            if cut { bytes.truncate(index) } else { bytes[index] = byte }
            if let Ok(text) = String::from_utf8(bytes) {
                if let Ok(inputs) = parse_payload(&text) {
                    for input in inputs.into_iter().flatten() {
                        if let AlarmInput::Change(change) = input {
                            let _ = decide(None, &change, FlapRule::default());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn change(state: AlarmState, minute: i64) -> AlarmChange {
        AlarmChange {
            alarm_name: "a".into(),
            alarm_arn: None,
            account: "1".into(),
            region: "r".into(),
            state,
            previous_state: None,
            reason: String::new(),
            state_time: DateTime::parse_from_rfc3339("2026-11-23T03:00:00Z")
                .unwrap()
                .with_timezone(&Utc)
                + Duration::minutes(minute),
            metrics: Vec::new(),
            threshold: None,
            composite_rule: None,
            triggering_alarms: Vec::new(),
            delivery: AlarmDelivery::EventBridge,
            warnings: Vec::new(),
        }
    }

    /// Apply a sequence, confirming every notification; return the notifications.
    fn run(changes: &[AlarmChange]) -> (Vec<AlarmNotification>, Option<AlarmRecord>) {
        let mut stored: Option<AlarmRecord> = None;
        let mut sent = Vec::new();
        for c in changes {
            match decide(stored.as_ref(), c, FlapRule::default()) {
                AlarmDecision::Stale => {}
                AlarmDecision::Resend(n) => sent.push(n),
                AlarmDecision::Apply(mut record) => {
                    if let Some(n) = record.pending.take() {
                        sent.push(n);
                    }
                    stored = Some(record);
                }
            }
        }
        (sent, stored)
    }

    /// An account or region that is not one would let a `#` make two alarms share a record.
    #[test]
    fn accounts_and_regions_are_checked() {
        let event: Value =
            serde_json::from_str(include_str!("../../../events/alarm/metric-alarm.json")).unwrap();
        let change = |account: &str, region: &str| {
            let mut e = event.clone();
            e["account"] = account.into();
            e["region"] = region.into();
            let (_, inputs) = parse_messages(&e.to_string()).expect("an alarm payload");
            inputs.into_iter().next().map(|(_, input)| input)
        };
        assert!(matches!(
            change("123456789012", "us-west-2"),
            Some(Ok(AlarmInput::Change(_)))
        ));
        for (account, region) in [("1#x", "us-west-2"), ("123456789012", "us#west-2")] {
            let refused = change(account, region);
            assert!(
                matches!(refused, Some(Err(AlarmParseError::Invalid { .. }))),
                "{refused:?}"
            );
        }
    }

    /// A period no alarm can have (past `u32`) is unknown, never wrapped into a small one.
    #[test]
    fn periods_past_u32_are_unknown_not_wrapped() {
        let sns = include_str!("../../../events/alarm/sns-alarm.json");
        let huge = sns.replace(r#"\"Period\":60"#, r#"\"Period\":4294967356"#);
        assert_ne!(sns, huge);
        let period = |text: &str| {
            let (_, inputs) = parse_messages(text).expect("an alarm payload");
            match inputs.into_iter().next() {
                Some((_, Ok(AlarmInput::Change(change)))) => change.metrics[0].period_seconds,
                _ => panic!("a change"),
            }
        };
        assert_eq!(period(sns), Some(60));
        assert_eq!(period(&huge), None);
    }

    #[test]
    fn alarm_then_ok_opens_and_recovers_with_duration() {
        let (sent, stored) = run(&[change(AlarmState::Alarm, 0), change(AlarmState::Ok, 20)]);
        assert_eq!(
            sent,
            [
                AlarmNotification::Opened,
                AlarmNotification::Recovered { open_seconds: 1200 }
            ]
        );
        assert_eq!(stored.unwrap().incident_opened_at, None);
    }

    #[test]
    fn duplicates_and_older_changes_do_nothing() {
        let (sent, stored) = run(&[
            change(AlarmState::Ok, 10),
            change(AlarmState::Alarm, 5),
            change(AlarmState::Ok, 10),
        ]);
        assert!(sent.is_empty(), "{sent:?}");
        assert_eq!(stored.unwrap().state, AlarmState::Ok);
        let (sent, _) = run(&[
            change(AlarmState::Alarm, 0),
            change(AlarmState::Alarm, 0),
            change(AlarmState::Alarm, 1),
        ]);
        assert_eq!(sent, [AlarmNotification::Opened]);
    }

    #[test]
    fn insufficient_data_is_a_notice_and_keeps_the_incident() {
        let (sent, stored) = run(&[
            change(AlarmState::Alarm, 0),
            change(AlarmState::InsufficientData, 5),
        ]);
        assert_eq!(
            sent,
            [
                AlarmNotification::Opened,
                AlarmNotification::InsufficientData
            ]
        );
        assert!(stored.unwrap().incident_opened_at.is_some());
    }

    #[test]
    fn flapping_pages_once_then_holds_until_stable() {
        let sequence: Vec<_> = (0..8)
            .map(|i| {
                change(
                    if i % 2 == 0 {
                        AlarmState::Alarm
                    } else {
                        AlarmState::Ok
                    },
                    2 * i,
                )
            })
            .collect();
        let (sent, stored) = run(&sequence);
        assert_eq!(
            sent,
            [
                AlarmNotification::Opened,
                AlarmNotification::Recovered { open_seconds: 120 },
                AlarmNotification::Opened,
                AlarmNotification::Recovered { open_seconds: 120 },
                AlarmNotification::Flapping { transitions: 5 },
            ]
        );
        let stored = stored.unwrap();
        assert!(stored.flapping_since.is_some());
        // Quiet for a whole window: the next change pages normally again.
        let mut later = sequence.clone();
        later.push(change(AlarmState::Alarm, 14 + 31));
        let (sent, stored) = run(&later);
        assert_eq!(sent.last(), Some(&AlarmNotification::Opened));
        assert!(stored.unwrap().flapping_since.is_none());
    }

    #[test]
    fn unconfirmed_notification_is_resent_on_redelivery() {
        let alarm = change(AlarmState::Alarm, 0);
        let AlarmDecision::Apply(record) = decide(None, &alarm, FlapRule::default()) else {
            panic!("expected apply");
        };
        assert_eq!(
            decide(Some(&record), &alarm, FlapRule::default()),
            AlarmDecision::Resend(AlarmNotification::Opened)
        );
    }

    #[test]
    fn unsent_notification_survives_a_quiet_newer_change() {
        let AlarmDecision::Apply(record) =
            decide(None, &change(AlarmState::Alarm, 0), FlapRule::default())
        else {
            panic!("expected apply");
        };
        // The page was never confirmed; a repeated ALARM (no new message) must keep it pending.
        let AlarmDecision::Apply(next) = decide(
            Some(&record),
            &change(AlarmState::Alarm, 1),
            FlapRule::default(),
        ) else {
            panic!("expected apply");
        };
        assert_eq!(next.pending, Some(AlarmNotification::Opened));
    }

    #[test]
    fn notification_codes_round_trip() {
        for n in [
            AlarmNotification::Opened,
            AlarmNotification::InsufficientData,
            AlarmNotification::Recovered { open_seconds: 42 },
            AlarmNotification::Flapping { transitions: 7 },
        ] {
            assert_eq!(AlarmNotification::parse(&n.code()), Some(n));
        }
    }

    #[test]
    fn parses_cloudwatch_timestamps() {
        assert!(parse_alarm_time("2019-10-01T13:56:40.987+0000").is_some());
        assert!(parse_alarm_time("2019-10-01T13:56:40Z").is_some());
        assert!(parse_alarm_time("yesterday").is_none());
    }

    #[test]
    fn bad_inputs_are_clear_errors_or_ignored() {
        let ignored = parse_payload(r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#).unwrap();
        assert!(matches!(ignored[0], Ok(AlarmInput::Ignored(_))));
        let missing = parse_payload(r#"{"detail-type":"CloudWatch Alarm State Change","source":"aws.cloudwatch","detail":{"alarmName":"a"}}"#).unwrap();
        assert_eq!(missing[0], Err(AlarmParseError::Missing("state")));
        let unknown = parse_payload(r#"{"detail-type":"CloudWatch Alarm State Change","source":"aws.cloudwatch","detail":{"alarmName":"a","state":{"value":"MAYBE","timestamp":"2019-10-01T13:56:40.987+0000"}}}"#).unwrap();
        assert!(matches!(
            unknown[0],
            Err(AlarmParseError::Invalid {
                field: "state.value",
                ..
            })
        ));
        let bad_reason = parse_payload(r#"{"detail-type":"CloudWatch Alarm State Change","source":"aws.cloudwatch","detail":{"alarmName":"a","state":{"value":"ALARM","reasonData":"{nope","timestamp":"2019-10-01T13:56:40.987+0000"}}}"#).unwrap();
        match &bad_reason[0] {
            Ok(AlarmInput::Change(c)) => assert!(c.warnings[0].contains("reasonData")),
            other => panic!("{other:?}"),
        }
        assert!(parse_payload("{").is_err());
        assert!(parse_payload("[]").is_err());
    }
}
