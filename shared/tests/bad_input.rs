//! Bad input (issue 7): every parser and envelope, fed arbitrary bytes and structurally mutated
//! real events from `events/`, never panics, rejects with an error that says what was wrong, and
//! loses nothing: a message that could not be read is retried (named in `batchItemFailures`, or
//! the invocation fails), and every event of a message that was acknowledged is in the ledger.
//!
//! Each property runs 10,000 cases, or `PROPTEST_CASES` when that is set. A long run (no AWS SDK
//! to build with release LTO; nothing here needs it): `PROPTEST_CASES=300000 cargo test --release
//! -p replmon-shared --no-default-features --features fakes --test bad_input`.
//! Inputs go through the parsers and through the real handlers over the in-memory fakes.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use replmon_shared::alarm::monitor::{AlarmMonitor, AlarmSettings};
use replmon_shared::alarm::{
    parse_alarm_time, parse_payload, AlarmInput, AlarmNotification, AlarmParseError, AlarmState,
};
use replmon_shared::canary::setup::{
    bucket_from_arn, CanarySegment, ReplicationRule, ReplicationSetup, RuleFilter,
};
use replmon_shared::canary::{Canary, CanaryError, CanarySettings, Trigger};
use replmon_shared::config::{
    AlarmEventsConfig, AwsSettings, CanaryConfig, ConfigError, ReplicationEventsConfig,
};
use replmon_shared::envelope::{Delivery, EnvelopeError};
use replmon_shared::event::{
    bucket_name_from_arn, decode_key, NotificationRecord, ParseError, ReplicationEventKind,
    S3Notification,
};
use replmon_shared::fakes::{
    Arrival, FakeS3, FixedMetrics, InMemoryLedger, ManualClock, NotificationBuilder,
    RecordingNotifier, RecordingProbeMetrics,
};
use replmon_shared::incident::IncidentCause;
use replmon_shared::replication::{messages as open_messages, Message};
use replmon_shared::replication::{HandlerError, MonitorSettings, ReplicationMonitor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Running properties
// ---------------------------------------------------------------------------------------------

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 10_000;

/// `ProptestConfig::with_cases` would override the environment, so it is read here.
fn cases() -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_CASES={value:?} is not a whole number")),
        Err(_) => DEFAULT_CASES,
    }
}

/// Run `test` on `cases()` values of `strategy`. A panic inside `test` is caught by proptest,
/// shrunk to a minimal input and reported as a failure, like a failed assertion.
fn check<S>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config {
        cases: cases(),
        // Failures print their minimal input; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{error}");
    }
}

/// A single-threaded runtime in paused time: the canary's polls and sleeps take no real time.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A rejection must say what was wrong: a sentence, not an empty string or a bare "error".
fn clear(message: &str, what: &str) -> Result<(), TestCaseError> {
    let trimmed = message.trim();
    prop_assert!(
        trimmed.len() >= 12 && trimmed.split_whitespace().count() >= 3,
        "{what}: rejection message is not a clear sentence: {message:?}"
    );
    prop_assert!(
        !matches!(
            trimmed.to_ascii_lowercase().as_str(),
            "error" | "invalid" | "invalid input" | "bad input" | "parse error"
        ),
        "{what}: rejection message says nothing: {message:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON documents that may hold what serde_json::Value cannot: duplicate keys, numbers of any size
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum J {
    Null,
    Bool(bool),
    /// The number's text as written (may overflow every Rust number type).
    Num(String),
    Str(String),
    Arr(Vec<J>),
    /// Fields in order; the same key may appear twice.
    Obj(Vec<(String, J)>),
}

impl J {
    fn from_value(value: &Value) -> J {
        match value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => J::Num(n.to_string()),
            Value::String(s) => J::Str(s.clone()),
            Value::Array(items) => J::Arr(items.iter().map(J::from_value).collect()),
            Value::Object(fields) => J::Obj(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), J::from_value(v)))
                    .collect(),
            ),
        }
    }

    fn parse(text: &str) -> Option<J> {
        serde_json::from_str::<Value>(text)
            .ok()
            .map(|v| J::from_value(&v))
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&Value::from(s.as_str()).to_string()),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(key.as_str()).to_string());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    fn children(&self) -> usize {
        match self {
            J::Arr(items) => items.len(),
            J::Obj(fields) => fields.len(),
            _ => 0,
        }
    }

    fn child_mut(&mut self, index: usize) -> Option<&mut J> {
        match self {
            J::Arr(items) => items.get_mut(index),
            J::Obj(fields) => fields.get_mut(index).map(|(_, v)| v),
            _ => None,
        }
    }

    fn at_mut(&mut self, path: &[usize]) -> Option<&mut J> {
        path.iter()
            .try_fold(self, |node, &index| node.child_mut(index))
    }

    /// Every node's path (child positions from the root), the root first.
    fn paths(&self) -> Vec<Vec<usize>> {
        self.paths_where(|_, _| true)
    }

    /// Paths of the nodes for which `keep(parent, node)` holds (`parent` is `None` at the root).
    fn paths_where(&self, keep: impl Fn(Option<&J>, &J) -> bool) -> Vec<Vec<usize>> {
        fn walk(
            node: &J,
            parent: Option<&J>,
            prefix: &mut Vec<usize>,
            keep: &dyn Fn(Option<&J>, &J) -> bool,
            out: &mut Vec<Vec<usize>>,
        ) {
            if keep(parent, node) {
                out.push(prefix.clone());
            }
            let children: Vec<&J> = match node {
                J::Arr(items) => items.iter().collect(),
                J::Obj(fields) => fields.iter().map(|(_, v)| v).collect(),
                _ => Vec::new(),
            };
            for (i, child) in children.into_iter().enumerate() {
                prefix.push(i);
                walk(child, Some(node), prefix, keep, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, None, &mut Vec::new(), &keep, &mut out);
        out
    }
}

/// A change to a document's structure, as a broken or hostile sender might make.
#[derive(Clone, Debug)]
enum Mutation {
    /// Remove a field or array element.
    Remove(Index),
    /// Replace a node with an odd value (wrong type, huge number, empty string, unicode, null,
    /// nested garbage).
    Replace(Index, J),
    /// The same field or element twice in a row (with the same value, or another).
    Duplicate(Index, Option<J>),
    /// Give a field another name (a known one, a case variant, or garbage).
    Rename(Index, String),
    /// Put a node inside an array or an object.
    Wrap(Index, bool),
    /// Keep only the start of a string, array or object.
    Cut(Index, Index),
    /// Mutate the JSON document inside a string: SNS `Message`, SQS `body`, alarm `reasonData`.
    Inner(Index, Vec<Mutation>),
}

fn pick(paths: &[Vec<usize>], index: &Index) -> Option<Vec<usize>> {
    (!paths.is_empty()).then(|| paths[index.index(paths.len())].clone())
}

impl Mutation {
    fn apply(&self, doc: &mut J) {
        match self {
            Mutation::Remove(at) => {
                let paths = doc.paths_where(|parent, _| parent.is_some());
                if let Some(path) = pick(&paths, at) {
                    let (last, parent) = path.split_last().unwrap();
                    match doc.at_mut(parent) {
                        Some(J::Arr(items)) => {
                            items.remove(*last);
                        }
                        Some(J::Obj(fields)) => {
                            fields.remove(*last);
                        }
                        _ => unreachable!(),
                    }
                }
            }
            Mutation::Replace(at, value) => {
                if let Some(path) = pick(&doc.paths(), at) {
                    *doc.at_mut(&path).unwrap() = value.clone();
                }
            }
            Mutation::Duplicate(at, value) => {
                let paths = doc.paths_where(|parent, _| parent.is_some());
                if let Some(path) = pick(&paths, at) {
                    let (last, parent) = path.split_last().unwrap();
                    match doc.at_mut(parent) {
                        Some(J::Arr(items)) => {
                            let copy = value.clone().unwrap_or_else(|| items[*last].clone());
                            items.insert(last + 1, copy);
                        }
                        Some(J::Obj(fields)) => {
                            let (key, old) = fields[*last].clone();
                            fields.insert(last + 1, (key, value.clone().unwrap_or(old)));
                        }
                        _ => unreachable!(),
                    }
                }
            }
            Mutation::Rename(at, name) => {
                let paths = doc.paths_where(|parent, _| matches!(parent, Some(J::Obj(_))));
                if let Some(path) = pick(&paths, at) {
                    let (last, parent) = path.split_last().unwrap();
                    if let Some(J::Obj(fields)) = doc.at_mut(parent) {
                        fields[*last].0 = name.clone();
                    }
                }
            }
            Mutation::Wrap(at, in_array) => {
                if let Some(path) = pick(&doc.paths(), at) {
                    let node = doc.at_mut(&path).unwrap();
                    let old = std::mem::replace(node, J::Null);
                    *node = if *in_array {
                        J::Arr(vec![old])
                    } else {
                        J::Obj(vec![("value".into(), old)])
                    };
                }
            }
            Mutation::Cut(at, keep) => {
                let paths = doc.paths_where(|_, node| match node {
                    J::Str(s) => !s.is_empty(),
                    other => other.children() > 0,
                });
                if let Some(path) = pick(&paths, at) {
                    match doc.at_mut(&path).unwrap() {
                        J::Str(s) => {
                            let count = s.chars().count();
                            *s = s.chars().take(keep.index(count)).collect();
                        }
                        J::Arr(items) => items.truncate(keep.index(items.len())),
                        J::Obj(fields) => fields.truncate(keep.index(fields.len())),
                        _ => unreachable!(),
                    }
                }
            }
            Mutation::Inner(at, mutations) => {
                // Strings that look like a JSON document; one that does not parse is left alone.
                let paths = doc.paths_where(
                    |_, node| matches!(node, J::Str(s) if s.trim_start().starts_with(['{', '['])),
                );
                if let Some(path) = pick(&paths, at) {
                    if let Some(J::Str(text)) = doc.at_mut(&path) {
                        if let Some(mut inner) = J::parse(text) {
                            for mutation in mutations {
                                mutation.apply(&mut inner);
                            }
                            *text = inner.text();
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Field names the parsers look for, so renames and garbage objects hit real code paths.
const KEYS: &[&str] = &[
    "Records",
    "eventName",
    "eventSource",
    "eventTime",
    "eventVersion",
    "awsRegion",
    "s3",
    "bucket",
    "name",
    "object",
    "key",
    "size",
    "versionId",
    "sequencer",
    "replicationEventData",
    "replicationRuleId",
    "destinationBucket",
    "s3Operation",
    "requestTime",
    "failureReason",
    "threshold",
    "replicationTime",
    "messageId",
    "body",
    "EventSource",
    "Sns",
    "Message",
    "MessageId",
    "Type",
    "Event",
    "Bucket",
    "Service",
    "detail-type",
    "detail",
    "source",
    "account",
    "region",
    "resources",
    "alarmName",
    "state",
    "previousState",
    "value",
    "reason",
    "reasonData",
    "timestamp",
    "configuration",
    "metrics",
    "metricStat",
    "metric",
    "namespace",
    "dimensions",
    "period",
    "stat",
    "expression",
    "alarmRule",
    "alarmData",
    "alarmArn",
    "AlarmName",
    "NewStateValue",
    "OldStateValue",
    "StateChangeTime",
    "Trigger",
    "Metrics",
    "MetricName",
    "Dimensions",
    "id",
    "run_id",
    "buckets",
    "records",
    "EVENTNAME",
    "",
];

const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1.5",
    "900",
    "1e12",
    "1000000000001",
    "1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "4294967296",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890123456789",
    "0.0000000000000000000000001",
];

const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "null",
    "true",
    "900",
    "900s",
    " 900 ",
    "-900",
    "NaN",
    "inf",
    "1e400",
    "{",
    "[",
    "\"",
    "\\",
    "{}",
    "[]",
    "{\"Records\":[]}",
    "{\"Records\":[{}]}",
    "{\"Records\":null}",
    "{\"Type\":\"Notification\"}",
    "{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}",
    "Replication:OperationFailedReplication",
    "Replication:OperationMissedThreshold",
    "Replication:OperationSomethingNew",
    "s3:Replication:OperationNotTracked",
    "ObjectCreated:Put",
    "aws:sqs",
    "aws:sns",
    "Notification",
    "Scheduled Event",
    "CloudWatch Alarm State Change",
    "aws.cloudwatch",
    "ALARM",
    "OK",
    "INSUFFICIENT_DATA",
    "arn:aws:s3:::",
    ":::",
    "arn:aws:s3:::dst",
    "2026-11-23T03:00:00Z",
    "2026-13-45T99:99:99Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999+23:59",
    "2019-10-01T13:56:40.987+0000",
    "+262143-12-31T23:59:59+0000",
    "-262144-01-01T00:00:00+0000",
    "%",
    "%F",
    "%FF%FE",
    "%C3%A9+%E2%82%AC",
    "a+b%2",
    "+++",
    "é€😀\u{200b}\u{202e}",
    "\u{fffd}\u{fffd}",
];

/// Any characters (proptest favours the awkward ones). Cheaper than a `\PC` regex by far.
fn unicode(len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    prop::collection::vec(any::<char>(), len)
        .prop_map(String::from_iter)
        .boxed()
}

/// Text of the given characters.
fn text_of(alphabet: &str, len: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(prop::sample::select(chars), len)
        .prop_map(String::from_iter)
        .boxed()
}

const DIGITS: &str = "0123456789";
const ALNUM: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWER_DIGITS: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

fn odd_number() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(ODD_NUMBERS).prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
    ]
    .boxed()
}

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(ODD_STRINGS).prop_map(str::to_owned),
        2 => unicode(0..=24),
        1 => text_of("0123456789:T.Z+-", 0..=32),
        1 => text_of("%+AaFf09 ", 0..=16),
        1 => (1usize..10_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

fn key_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => unicode(0..=12),
    ]
    .boxed()
}

/// Values that do not belong where they are put.
fn odd_value() -> BoxedStrategy<J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        odd_number().prop_map(J::Num),
        odd_string().prop_map(J::Str),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
            prop::collection::vec((key_name(), inner), 0..4).prop_map(J::Obj),
        ]
    })
    .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    let leaf = prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Remove),
        3 => (any::<Index>(), odd_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        1 => (any::<Index>(), prop::option::of(odd_value()))
            .prop_map(|(at, v)| Mutation::Duplicate(at, v)),
        1 => (any::<Index>(), key_name()).prop_map(|(at, k)| Mutation::Rename(at, k)),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(at, a)| Mutation::Wrap(at, a)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, keep)| Mutation::Cut(at, keep)),
    ];
    // Up to two levels of embedded documents: SQS body -> SNS Message -> S3 notification.
    leaf.prop_recursive(2, 8, 3, |inner| {
        (any::<Index>(), prop::collection::vec(inner, 1..=3))
            .prop_map(|(at, mutations)| Mutation::Inner(at, mutations))
    })
    .boxed()
}

/// A real event from `events/`, structurally mutated, perhaps cut short as text.
#[derive(Clone, Debug)]
struct Mutated {
    fixture: String,
    mutations: Vec<Mutation>,
    cut: Option<Index>,
}

fn mutated(fixtures: &[(String, String)]) -> BoxedStrategy<Mutated> {
    let names: Vec<String> = fixtures.iter().map(|(name, _)| name.clone()).collect();
    (
        prop::sample::select(names),
        prop::collection::vec(mutation(), 1..=3),
        prop::option::weighted(0.15, any::<Index>()),
    )
        .prop_map(|(fixture, mutations, cut)| Mutated {
            fixture,
            mutations,
            cut,
        })
        .boxed()
}

impl Mutated {
    fn payload(&self, fixtures: &[(String, String)]) -> String {
        let original = &fixtures
            .iter()
            .find(|(name, _)| *name == self.fixture)
            .unwrap()
            .1;
        // Fixtures that are not JSON at all (events/bad/truncated.json) are only cut.
        let mut text = match J::parse(original) {
            Some(mut doc) => {
                for mutation in &self.mutations {
                    mutation.apply(&mut doc);
                }
                doc.text()
            }
            None => original.clone(),
        };
        if let Some(cut) = &self.cut {
            let mut end = cut.index(text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

/// JSON-ish fragments, so random text sometimes gets past the first brace.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "\"Records\"",
    "\"body\"",
    "\"messageId\"",
    "\"eventSource\"",
    "\"aws:sqs\"",
    "\"EventSource\"",
    "\"aws:sns\"",
    "\"Sns\"",
    "\"Message\"",
    "\"Type\"",
    "\"Notification\"",
    "\"Event\"",
    "\"s3:TestEvent\"",
    "\"eventName\"",
    "\"Replication:OperationFailedReplication\"",
    "\"replicationEventData\"",
    "\"detail-type\"",
    "\"detail\"",
    "\"alarmData\"",
    "\"AlarmName\"",
    "\"state\"",
    "\"run_id\"",
    "\"buckets\"",
    "\"id\"",
    "\\\"",
    "\\u0000",
    "\\ud800",
];

/// Arbitrary input: raw bytes (as the text Lambda would hand over), JSON-ish token soup, and
/// random JSON documents built from the field names the parsers know.
fn arbitrary_input() -> BoxedStrategy<String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(TOKENS).prop_map(str::to_owned),
                1 => unicode(0..=6),
            ],
            0..64
        )
        .prop_map(|parts| parts.concat()),
        odd_value().prop_map(|doc| doc.text()),
        prop::collection::vec((key_name(), odd_value()), 0..6)
            .prop_map(|fields| J::Obj(fields).text()),
    ]
    .boxed()
}

/// Every `.json` file under these directories of `events/`, by path.
fn fixtures(dirs: &[&str]) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut out = Vec::new();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.extension().is_some_and(|e| e == "json") && !path.ends_with("manifest.json")
            })
            .collect();
        files.sort();
        for path in files {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(out.len() >= dirs.len(), "no fixtures found in {dirs:?}");
    out
}

const REPLICATION_DIRS: &[&str] = &["direct", "sns", "sqs", "sqs-sns", "bad"];
const ALARM_DIRS: &[&str] = &["alarm", "alarm/bad", "alarm/flapping", "alarm/out-of-order"];
const CANARY_DIRS: &[&str] = &["canary", "canary/bad"];

// ---------------------------------------------------------------------------------------------
// Replication events: envelope::open, S3Notification::from_json, ReplicationMonitor::handle
// ---------------------------------------------------------------------------------------------

/// What the payload's `Records` array holds, read independently of the parsers under test.
fn records_of(text: &str) -> Option<Vec<Value>> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Object(mut top) => match top.remove("Records")? {
            Value::Array(records) => Some(records),
            _ => None,
        },
        _ => None,
    }
}

/// Whether serde_json::Value can hold the document. The parsers skip the fields they ignore
/// (where a number like `1e400` may sit, which no Value holds): cross-checks need a Value.
fn readable(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok()
}

/// `envelope::open` alone: no panic, clear rejections, one message per record.
fn check_open(payload: &str) -> Result<Option<(Delivery, Vec<Message>)>, TestCaseError> {
    let opened = match open_messages(payload) {
        Err(error) => {
            let EnvelopeError::Unrecognised(detail) = &error;
            prop_assert!(!detail.trim().is_empty(), "empty detail in {error:?}");
            clear(&error.to_string(), "envelope::open")?;
            return Ok(None);
        }
        Ok(opened) => opened,
    };
    let (delivery, messages) = &opened;
    for message in messages {
        if let Err(error) = &message.notification {
            check_parse_error(error, "envelope message")?;
        }
    }
    if *delivery == Delivery::Direct {
        prop_assert!(messages.len() <= 1, "a direct payload is one message");
    } else if readable(payload) {
        // SQS and SNS: every record is a message of its own, none dropped, none invented.
        let records = records_of(payload);
        prop_assert_eq!(
            records.as_ref().map(Vec::len),
            Some(messages.len()),
            "{:?} delivery: messages do not match the payload's records",
            delivery
        );
        if *delivery == Delivery::Sqs {
            for (message, record) in messages.iter().zip(records.iter().flatten()) {
                // The id is the record's `messageId`; an unreadable record gets "" instead,
                // which makes Lambda fail the whole batch (so it is retried, never dropped).
                let expected = record.get("messageId").and_then(Value::as_str);
                prop_assert!(
                    message.id.is_empty() || Some(message.id.as_str()) == expected,
                    "message id {:?} is not the record's messageId {:?}",
                    message.id,
                    expected
                );
            }
        }
    }
    Ok(Some(opened))
}

fn check_parse_error(error: &ParseError, what: &str) -> Result<(), TestCaseError> {
    match error {
        ParseError::InvalidJson(detail) => {
            prop_assert!(
                !detail.trim().is_empty(),
                "{what}: empty detail in {error:?}"
            )
        }
        ParseError::InvalidRecord { reason, .. } => {
            prop_assert!(
                !reason.trim().is_empty(),
                "{what}: empty reason in {error:?}"
            )
        }
        ParseError::NotS3Notification => {}
    }
    clear(&error.to_string(), what)
}

/// `S3Notification::from_json` alone, cross-checked against an independent reading of the
/// document: one parsed record per record, each holding what the record says.
fn check_from_json(text: &str) -> Result<(), TestCaseError> {
    let parsed = match S3Notification::from_json(text) {
        Err(error) => {
            check_parse_error(&error, "S3Notification::from_json")?;
            let inner = unwrap_sns(text);
            if let (ParseError::InvalidRecord { index, .. }, true) = (error, readable(&inner)) {
                let count = records_of(&inner).map_or(0, |r| r.len());
                prop_assert!(index < count, "record index {index} of {count} records");
            }
            return Ok(());
        }
        Ok(parsed) => parsed,
    };
    let S3Notification::Records(parsed) = parsed else {
        return Ok(());
    };
    let inner = unwrap_sns(text);
    if !readable(&inner) {
        return Ok(());
    }
    let records = records_of(&inner);
    prop_assert_eq!(
        records.as_ref().map(Vec::len),
        Some(parsed.len()),
        "records parsed do not match the document's records"
    );
    for (record, wire) in parsed.iter().zip(records.iter().flatten()) {
        // Each field the parser kept is the field the record holds.
        let same = |path: &[&str], kept: Option<&str>| -> Result<(), TestCaseError> {
            if let Some(found) = field(wire, path) {
                prop_assert_eq!(found, kept, "field {:?}", path);
            }
            Ok(())
        };
        match record {
            NotificationRecord::Other { event_name }
            | NotificationRecord::UnknownReplication { event_name } => {
                same(&["eventName"], Some(event_name))?;
                prop_assert!(ReplicationEventKind::from_event_name(event_name).is_none());
            }
            NotificationRecord::Replication(event) => {
                if let Some(name) = field(wire, &["eventName"]) {
                    prop_assert_eq!(
                        name.and_then(ReplicationEventKind::from_event_name),
                        Some(event.kind)
                    );
                }
                same(&["s3", "bucket", "name"], Some(&event.source_bucket))?;
                prop_assert!(!event.source_bucket.is_empty());
                if let Some(key) = field(wire, &["s3", "object", "key"]) {
                    prop_assert_eq!(key.map(decode_key), Some(event.key.clone()));
                }
                same(
                    &["replicationEventData", "destinationBucket"],
                    Some(&event.destination_arn),
                )?;
                same(
                    &["replicationEventData", "failureReason"],
                    event.failure_reason.as_deref(),
                )?;
                prop_assert_eq!(
                    bucket_name_from_arn(&event.destination_arn),
                    event.destination_bucket.as_str()
                );
                prop_assert!(
                    !event.destination_bucket.is_empty() || event.destination_arn.ends_with(":::")
                );
                for seconds in [event.threshold_seconds, event.replication_time_seconds]
                    .into_iter()
                    .flatten()
                {
                    prop_assert!(seconds.is_finite() && (0.0..=1e12).contains(&seconds));
                }
            }
        }
    }
    Ok(())
}

/// A string field as this independent reader finds it (`Some(None)`: absent or not a string),
/// or `None` when a level on the way is an array: serde fills a struct from an array of its
/// fields in order (`"bucket": ["name"]`), a form S3 never sends and this reader does not follow.
fn field<'a>(value: &'a Value, path: &[&str]) -> Option<Option<&'a str>> {
    let mut node = value;
    for key in path {
        match node {
            Value::Object(fields) => match fields.get(*key) {
                Some(next) => node = next,
                None => return Some(None),
            },
            Value::Array(_) => return None,
            _ => return Some(None),
        }
    }
    Some(node.as_str())
}

/// The S3 notification an SNS envelope (`Type: Notification`) carries, or the text itself.
fn unwrap_sns(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(&text) else {
            return text;
        };
        match (top.get("Type"), top.get("Message")) {
            (Some(Value::String(kind)), Some(Value::String(message))) if kind == "Notification" => {
                text = message.clone();
            }
            _ => return text,
        }
    }
}

struct ReplicationWorld {
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    clock: ManualClock,
}

impl ReplicationWorld {
    fn new() -> Self {
        ReplicationWorld {
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            clock: ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 3, 30, 0).unwrap()),
        }
    }
}

/// The payload through the parsers and `ReplicationMonitor::handle`: no panic, and nothing lost.
fn check_replication(payload: &str, rt: &tokio::runtime::Runtime) -> Result<(), TestCaseError> {
    let opened = check_open(payload)?;
    if let Some((_, messages)) = &opened {
        for message in messages {
            // Each message body once more through from_json with the cross-checks.
            if let Ok(S3Notification::Records(_)) = &message.notification {
                if message.id == "direct" {
                    check_from_json(payload)?;
                }
            }
        }
    }
    let world = ReplicationWorld::new();
    let monitor = ReplicationMonitor::new(
        &world.ledger,
        &world.notifier,
        &world.clock,
        MonitorSettings::default(),
    );
    let result = rt.block_on(monitor.handle(payload));
    let Some((delivery, messages)) = opened else {
        // Not an S3, SNS or SQS payload: the invocation fails with the envelope's reason.
        match result {
            Err(HandlerError::Unrecognised(error)) => clear(&error.to_string(), "handler")?,
            other => prop_assert!(false, "unrecognised payload accepted: {other:?}"),
        }
        return Ok(());
    };
    let unreadable: Vec<&Message> = messages
        .iter()
        .filter(|m| m.notification.is_err())
        .collect();
    match delivery {
        Delivery::Sqs => {
            let response = result.map_err(|e| {
                TestCaseError::fail(format!("an SQS batch must never fail as a whole: {e}"))
            })?;
            let failures: BTreeSet<&str> = response["batchItemFailures"]
                .as_array()
                .ok_or_else(|| TestCaseError::fail(format!("no batchItemFailures: {response}")))?
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap_or("<not a string>"))
                .collect();
            // With healthy fakes exactly the unreadable messages are retried: each of them is
            // named (an unknown id is "", which fails the whole batch), and no readable one is.
            let expected: BTreeSet<&str> = unreadable.iter().map(|m| m.id.as_str()).collect();
            prop_assert_eq!(failures, expected);
        }
        Delivery::Direct | Delivery::Sns | Delivery::EventBridge if unreadable.is_empty() => {
            let report = result.map_err(|e| {
                TestCaseError::fail(format!("readable payload failed with healthy fakes: {e}"))
            })?;
            prop_assert_eq!(report["messages"].as_u64(), Some(messages.len() as u64));
        }
        Delivery::Direct | Delivery::Sns | Delivery::EventBridge => match result {
            // The invocation fails, so S3 or SNS delivers it again.
            Err(HandlerError::Incomplete {
                failed,
                total,
                first_error,
            }) => {
                prop_assert_eq!(failed, unreadable.len());
                prop_assert_eq!(total, messages.len());
                let first = unreadable[0].notification.as_ref().unwrap_err();
                prop_assert!(
                    first_error.contains(&first.to_string()),
                    "{first_error:?} does not say {first}"
                );
            }
            other => prop_assert!(false, "unreadable message acknowledged: {other:?}"),
        },
    }
    // Every replication event of a message that was acknowledged is in the ledger.
    let objects = world.ledger.objects();
    for message in &messages {
        let Ok(S3Notification::Records(records)) = &message.notification else {
            continue;
        };
        for record in records {
            let NotificationRecord::Replication(event) = record else {
                continue;
            };
            if event.kind == ReplicationEventKind::OperationNotTracked {
                continue;
            }
            prop_assert!(
                objects
                    .iter()
                    .any(|o| o.source_bucket == event.source_bucket
                        && o.destination_bucket == event.destination_bucket
                        && o.key == event.key
                        && o.version_id == event.version_id),
                "event for {:?} acknowledged but not recorded",
                event.key
            );
        }
    }
    Ok(())
}

#[test]
fn replication_events_arbitrary_input() {
    let rt = runtime();
    check(arbitrary_input(), |payload| {
        check_from_json(&payload)?;
        check_replication(&payload, &rt)
    });
}

#[test]
fn replication_events_mutated_real_events() {
    let rt = runtime();
    let fixtures = fixtures(REPLICATION_DIRS);
    check(mutated(&fixtures), |case| {
        let payload = case.payload(&fixtures);
        check_replication(&payload, &rt)
    });
}

/// The notification parser on its own, on mutated notifications as SNS and SQS carry them
/// (the `Message` or `body` of every record of every fixture, and the direct payloads).
#[test]
fn s3_notification_from_json_mutated() {
    let mut notifications = Vec::new();
    for (name, text) in fixtures(REPLICATION_DIRS) {
        notifications.push((name.clone(), text.clone()));
        for (i, record) in records_of(&text).into_iter().flatten().enumerate() {
            let inner = record
                .pointer("/Sns/Message")
                .or_else(|| record.get("body"))
                .and_then(Value::as_str);
            if let Some(inner) = inner {
                notifications.push((format!("{name}#{i}"), inner.to_owned()));
            }
        }
    }
    check(mutated(&notifications), |case| {
        check_from_json(&case.payload(&notifications))
    });
}

/// How a number of seconds is written in `threshold` / `replicationTime`, and whether it is
/// acceptable: a number or a numeric string (with an optional `s`), 0 to 1e12 seconds.
#[derive(Clone, Debug)]
enum SecondsWire {
    Missing,
    Null,
    Number(String, Option<f64>),
    Text(String, Option<f64>),
    Bad(J),
}

fn seconds_wire() -> BoxedStrategy<SecondsWire> {
    let valid = |v: f64| (v.is_finite() && (0.0..=1e12).contains(&v)).then_some(v);
    prop_oneof![
        Just(SecondsWire::Missing),
        Just(SecondsWire::Null),
        (0u64..2_000_000_000_000)
            .prop_map(move |n| SecondsWire::Number(n.to_string(), valid(n as f64))),
        any::<u64>().prop_map(move |n| SecondsWire::Number(n.to_string(), valid(n as f64))),
        (i64::MIN..0).prop_map(|n| SecondsWire::Number(n.to_string(), None)),
        (-1e3f64..2e12).prop_map(move |f| SecondsWire::Number(format!("{f:?}"), valid(f))),
        (0u64..2_000_000_000_000, 0usize..4).prop_map(move |(n, form)| {
            let text = match form {
                0 => n.to_string(),
                1 => format!("{n}s"),
                2 => format!(" {n} "),
                _ => format!("{n}.5"),
            };
            let value = if form == 3 { n as f64 + 0.5 } else { n as f64 };
            SecondsWire::Text(text, valid(value))
        }),
        (-1e3f64..2e12).prop_map(move |f| SecondsWire::Text(format!("{f}"), valid(f))),
        text_of("abcsSeEfinINaA ", 0..=10).prop_map(|s| SecondsWire::Text(s, None)),
        prop::sample::select(
            &["1e400", "-1e400", "NaN", "inf", "-inf", "", "s", "--1", "0x10"][..]
        )
        .prop_map(|s| SecondsWire::Text(s.to_owned(), None)),
        prop::sample::select(&["1e400", "-1e400", "18446744073709551616e400"][..])
            .prop_map(|s| SecondsWire::Number(s.to_owned(), None)),
        prop_oneof![
            any::<bool>().prop_map(J::Bool),
            Just(J::Arr(vec![J::Num("900".into())])),
            Just(J::Obj(vec![("seconds".into(), J::Num("900".into()))])),
        ]
        .prop_map(SecondsWire::Bad),
    ]
    .boxed()
}

impl SecondsWire {
    fn j(&self) -> Option<J> {
        match self {
            SecondsWire::Missing => None,
            SecondsWire::Null => Some(J::Null),
            SecondsWire::Number(n, _) => Some(J::Num(n.clone())),
            SecondsWire::Text(s, _) => Some(J::Str(s.clone())),
            SecondsWire::Bad(j) => Some(j.clone()),
        }
    }

    /// `Ok(None)`: absent; `Err(())`: the record must be rejected.
    fn expected(&self) -> Result<Option<f64>, ()> {
        match self {
            SecondsWire::Missing | SecondsWire::Null => Ok(None),
            SecondsWire::Number(_, v) | SecondsWire::Text(_, v) => v.map(Some).ok_or(()),
            SecondsWire::Bad(_) => Err(()),
        }
    }
}

/// Replication event data as S3 might write it: any object key (URL-encoded as S3 does), and
/// `threshold` / `replicationTime` as numbers or strings, valid or not.
#[test]
fn replication_event_data_keys_and_seconds() {
    let kinds = [
        ReplicationEventKind::OperationFailedReplication,
        ReplicationEventKind::OperationMissedThreshold,
        ReplicationEventKind::OperationReplicatedAfterThreshold,
        ReplicationEventKind::OperationNotTracked,
    ];
    let strategy = (
        prop::sample::select(kinds.to_vec()),
        prop_oneof![unicode(1..=40), text_of("abz +%/().~_-", 1..=40)],
        seconds_wire(),
        seconds_wire(),
        any::<bool>(),
    );
    let rt = runtime();
    check(strategy, |(kind, key, threshold, time, via_sqs)| {
        let builder = NotificationBuilder::new("src", "dst", "rule-1");
        let mut record = J::from_value(&builder.record(kind, &key, "v1", Some("Code")));
        if let J::Obj(fields) = &mut record {
            for (name, value) in fields.iter_mut() {
                if name == "replicationEventData" {
                    if let J::Obj(data) = value {
                        data.retain(|(k, _)| k != "threshold" && k != "replicationTime");
                        data.extend(threshold.j().map(|j| ("threshold".to_owned(), j)));
                        data.extend(time.j().map(|j| ("replicationTime".to_owned(), j)));
                    }
                }
            }
        }
        let notification = J::Obj(vec![("Records".into(), J::Arr(vec![record]))]).text();
        check_from_json(&notification)?;
        let parsed = S3Notification::from_json(&notification);
        match (threshold.expected(), time.expected()) {
            (Ok(threshold), Ok(time)) => {
                let Ok(S3Notification::Records(records)) = &parsed else {
                    return Err(TestCaseError::fail(format!("rejected: {parsed:?}")));
                };
                let NotificationRecord::Replication(event) = &records[0] else {
                    return Err(TestCaseError::fail(format!("not replication: {records:?}")));
                };
                // The key S3 URL-encoded comes back exactly.
                prop_assert_eq!(&event.key, &key);
                // serde_json reads decimals to within an ulp (no `float_roundtrip`), hence `near`.
                let near = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    (a, b) => a == b,
                };
                prop_assert!(
                    near(event.threshold_seconds, threshold),
                    "{:?} vs {threshold:?}",
                    event.threshold_seconds
                );
                prop_assert!(
                    near(event.replication_time_seconds, time),
                    "{:?} vs {time:?}",
                    event.replication_time_seconds
                );
            }
            _ => {
                let Err(error) = &parsed else {
                    return Err(TestCaseError::fail(format!("accepted: {parsed:?}")));
                };
                // Says which record and which field, and what it expected.
                let message = error.to_string();
                prop_assert!(message.contains("record 0"), "{message}");
                prop_assert!(message.contains("replicationEventData"), "{message}");
                prop_assert!(
                    message.contains("seconds") || message.contains("number"),
                    "{message}"
                );
            }
        }
        // And through the handler, delivered by SQS or directly: acknowledged and recorded, or
        // retried.
        let payload = if via_sqs {
            NotificationBuilder::sqs_event(&[notification]).to_string()
        } else {
            notification
        };
        check_replication(&payload, &rt)
    });
}

// ---------------------------------------------------------------------------------------------
// Alarms: parse_payload, parse_alarm_time, AlarmMonitor::handle
// ---------------------------------------------------------------------------------------------

fn check_alarm_error(error: &AlarmParseError) -> Result<(), TestCaseError> {
    match error {
        AlarmParseError::InvalidJson(detail) => prop_assert!(!detail.trim().is_empty()),
        AlarmParseError::Missing(field) => prop_assert!(!field.is_empty()),
        AlarmParseError::Invalid { field, .. } => prop_assert!(!field.is_empty()),
        AlarmParseError::UnknownShape => {}
    }
    clear(&error.to_string(), "alarm::parse_payload")
}

fn check_alarm(payload: &str, rt: &tokio::runtime::Runtime) -> Result<(), TestCaseError> {
    let parsed = parse_payload(payload);
    match &parsed {
        Err(error) => check_alarm_error(error)?,
        Ok(inputs) => {
            // An SNS event: one result per record, none dropped.
            if let Some(records) = records_of(payload) {
                prop_assert_eq!(inputs.len(), records.len());
            } else {
                prop_assert_eq!(inputs.len(), 1);
            }
            for input in inputs {
                match input {
                    Err(error) => check_alarm_error(error)?,
                    Ok(AlarmInput::Ignored(what)) => prop_assert!(!what.is_empty()),
                    Ok(AlarmInput::Change(change)) => {
                        for warning in &change.warnings {
                            clear(warning, "alarm warning")?;
                        }
                    }
                }
            }
        }
    }
    let ledger = InMemoryLedger::default();
    let notifier = RecordingNotifier::default();
    let metrics = FixedMetrics::default();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 3, 30, 0).unwrap());
    let monitor = AlarmMonitor::new(
        &ledger,
        &notifier,
        &metrics,
        &clock,
        AlarmSettings::default(),
    );
    // With healthy fakes the handler never fails: bad input is acknowledged (no retry can fix
    // it) and says why; everything else is processed.
    let response = rt
        .block_on(monitor.handle(payload))
        .map_err(|e| TestCaseError::fail(format!("handler failed with healthy fakes: {e}")))?;
    match parsed {
        Err(error) => {
            prop_assert_eq!(response["rejected"].as_str(), Some(&*error.to_string()));
        }
        Ok(inputs) => {
            let count = |f: fn(&Result<AlarmInput, AlarmParseError>) -> bool| {
                inputs.iter().filter(|i| f(i)).count() as u64
            };
            prop_assert_eq!(response["changes"].as_u64(), Some(inputs.len() as u64));
            prop_assert_eq!(response["rejected"].as_u64(), Some(count(|i| i.is_err())));
            prop_assert_eq!(
                response["ignored"].as_u64(),
                Some(count(|i| matches!(i, Ok(AlarmInput::Ignored(_)))))
            );
            let changes = count(|i| matches!(i, Ok(AlarmInput::Change(_))));
            let notified = response["notified"].as_u64().unwrap_or(u64::MAX);
            prop_assert!(notified <= changes);
            prop_assert_eq!(notifier.pages().len() as u64, notified);
            for page in notifier.pages() {
                prop_assert!(!page.subject().trim().is_empty());
                prop_assert!(!page.body().trim().is_empty());
            }
        }
    }
    Ok(())
}

#[test]
fn alarm_events_arbitrary_input() {
    let rt = runtime();
    check(arbitrary_input(), |payload| check_alarm(&payload, &rt));
}

#[test]
fn alarm_events_mutated_real_events() {
    let rt = runtime();
    let fixtures = fixtures(ALARM_DIRS);
    check(mutated(&fixtures), |case| {
        check_alarm(&case.payload(&fixtures), &rt)
    });
}

/// CloudWatch timestamps: any text is a time or `None`, never a panic; every representable
/// time written as CloudWatch or RFC 3339 writes it reads back the same.
#[test]
fn alarm_time_parser() {
    // Two days inside chrono's range, so any offset keeps the local time representable.
    let min = DateTime::<Utc>::MIN_UTC.timestamp_millis() + 2 * 86_400_000;
    let max = DateTime::<Utc>::MAX_UTC.timestamp_millis() - 2 * 86_400_000;
    let written = (min..=max, 0usize..3, -1439i32..=1439).prop_map(|(millis, form, minutes)| {
        let time = DateTime::<Utc>::from_timestamp_millis(millis).unwrap();
        let local = time.with_timezone(&chrono::FixedOffset::east_opt(minutes * 60).unwrap());
        let text = match form {
            // CloudWatch: 2019-10-01T13:56:40.987+0000
            0 => local.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string(),
            1 => local.to_rfc3339(),
            _ => local.format("%Y-%m-%dT%H:%M:%S%.f%:z").to_string(),
        };
        let four_digit_year = (0..=9999).contains(&chrono::Datelike::year(&local));
        (text, Some((time, four_digit_year)))
    });
    let strategy = prop_oneof![
        arbitrary_input().prop_map(|text| (text, None)),
        odd_string().prop_map(|text| (text, None)),
        (
            text_of(DIGITS, 1..=6),
            prop::collection::vec(text_of(DIGITS, 1..=2), 5),
            text_of(".0123456789", 0..=12),
            prop::sample::select(&["", "Z", "z", "+0000", "-00:00", "+2359", "+24:00", "+99"][..]),
        )
            .prop_map(|(year, parts, fraction, zone)| {
                let [mo, d, h, mi, sec] = [0, 1, 2, 3, 4].map(|i| &parts[i]);
                format!("{year}-{mo}-{d}T{h}:{mi}:{sec}{fraction}{zone}")
            })
            .prop_map(|text| (text, None)),
        written,
    ];
    check(strategy, |(text, expected)| {
        let parsed = parse_alarm_time(&text);
        match expected {
            // Years of four digits always read back; others may be refused, never misread.
            Some((time, true)) => prop_assert_eq!(parsed, Some(time), "{}", text),
            Some((time, false)) => {
                if let Some(parsed) = parsed {
                    prop_assert_eq!(parsed, time, "{}", text);
                }
            }
            None => {
                if parsed.is_some() {
                    prop_assert!(
                        text.chars().filter(char::is_ascii_digit).count() >= 8,
                        "{text:?}"
                    );
                }
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Canary: Trigger::parse, Canary::handle
// ---------------------------------------------------------------------------------------------

const REQUEST_ID: &str = "request-1";

fn check_canary(payload: &str, rt: &tokio::runtime::Runtime) -> Result<(), TestCaseError> {
    let trigger = Trigger::parse(payload, REQUEST_ID);
    match &trigger {
        Err(error) => {
            let CanaryError::BadTrigger(detail) = error else {
                return Err(TestCaseError::fail(format!("parse gave {error:?}")));
            };
            prop_assert!(!detail.trim().is_empty());
            clear(&error.to_string(), "canary::Trigger::parse")?;
            // Only text that is not a JSON object (of the expected field types) is refused, an
            // EventBridge event (it has `detail-type`) whose header `aws_lambda_events` cannot
            // read (no `source` or `detail`, a `time` that is no time), or a run ID that would
            // make unusual probe keys: named as such.
            if let Ok(Value::Object(_)) = serde_json::from_str::<Value>(payload) {
                prop_assert!(
                    detail.contains("invalid type")
                        || detail.contains("duplicate field")
                        || detail.contains("invalid value")
                        || detail.contains("EventBridge event:")
                        // A run ID that would make unusual probe keys (canary::trigger).
                        || detail.starts_with("run_id "),
                    "object refused for an unexpected reason: {detail}"
                );
            }
        }
        Ok(trigger) => {
            // A JSON object (whose ignored fields may hold numbers no Rust type holds).
            prop_assert!(payload.trim_start().starts_with('{'), "{payload:?}");
            prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok());
            prop_assert!(!trigger.run_id.trim().is_empty());
            if let Some(buckets) = &trigger.buckets {
                prop_assert!(!buckets.is_empty());
                for bucket in buckets {
                    prop_assert!(!bucket.is_empty() && bucket.trim() == bucket);
                }
            }
        }
    }
    let s3 = FakeS3::default();
    s3.add_bucket(
        "replmon-demo-source",
        Some(ReplicationSetup {
            role: "role".into(),
            rules: vec![ReplicationRule {
                id: "dr".into(),
                priority: Some(1),
                enabled: true,
                filter: RuleFilter::default(),
                destination_bucket: "replmon-demo-replica".into(),
                destination_account: None,
                metrics_enabled: true,
                rtc_enabled: true,
                replicates_kms_objects: true,
            }],
        }),
    );
    s3.add_bucket("replmon-demo-replica", None);
    s3.set_arrival(
        "replmon-demo-replica",
        Arrival::After(Duration::from_secs(1)),
    );
    let ledger = InMemoryLedger::default();
    let notifier = RecordingNotifier::default();
    let metrics = RecordingProbeMetrics::default();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap());
    let configured = vec!["replmon-demo-source".to_owned()];
    let canary = Canary::new(
        &s3,
        &ledger,
        &notifier,
        &metrics,
        &clock,
        configured.clone(),
        CanarySettings::default(),
    );
    let result = rt.block_on(canary.handle(payload, REQUEST_ID));
    match (trigger, result) {
        (Err(expected), Err(error)) => {
            prop_assert_eq!(error.to_string(), expected.to_string());
        }
        (Ok(trigger), Ok(report)) => {
            // Every bucket asked for is reported on, in order, under the trigger's run id.
            prop_assert_eq!(&report.run_id, &trigger.run_id);
            let reported: Vec<&str> = report.buckets.iter().map(|b| b.bucket.as_str()).collect();
            let asked: Vec<&str> = trigger
                .buckets
                .as_ref()
                .unwrap_or(&configured)
                .iter()
                .map(String::as_str)
                .collect();
            prop_assert_eq!(reported, asked);
            for bucket in &report.buckets {
                for problem in &bucket.problems {
                    clear(problem, "canary problem")?;
                }
            }
        }
        (trigger, result) => {
            prop_assert!(
                false,
                "trigger {trigger:?} but the run gave {:?}",
                result.map(|r| r.run_id)
            );
        }
    }
    Ok(())
}

#[test]
fn canary_trigger_arbitrary_input() {
    let rt = runtime();
    check(arbitrary_input(), |payload| check_canary(&payload, &rt));
}

#[test]
fn canary_trigger_mutated_real_events() {
    let rt = runtime();
    let fixtures = fixtures(CANARY_DIRS);
    check(mutated(&fixtures), |case| {
        check_canary(&case.payload(&fixtures), &rt)
    });
}

// ---------------------------------------------------------------------------------------------
// Configuration: every *Config::from_env over a fake environment
// ---------------------------------------------------------------------------------------------

/// The numeric variables: name, default, min, max (the README's configuration table).
const NUMBERS: &[(&str, u64, u64, u64)] = &[
    ("REPLMON_AWS_OPERATION_TIMEOUT_MS", 10_000, 100, 900_000),
    ("REPLMON_AWS_ATTEMPT_TIMEOUT_MS", 3_000, 50, 900_000),
    ("REPLMON_AWS_CONNECT_TIMEOUT_MS", 1_000, 50, 60_000),
    ("REPLMON_AWS_MAX_ATTEMPTS", 3, 1, 10),
    ("REPLMON_SUMMARY_WINDOW_SECONDS", 900, 1, 604_800),
    ("REPLMON_PAGE_SAMPLE_KEYS", 10, 1, 50),
    ("REPLMON_LEDGER_TTL_DAYS", 90, 1, 3650),
    ("REPLMON_PAGE_LEASE_SECONDS", 60, 1, 3600),
    ("REPLMON_WRITE_CONCURRENCY", 16, 1, 256),
    ("REPLMON_FLAP_TRANSITIONS", 4, 1, 100),
    ("REPLMON_FLAP_WINDOW_SECONDS", 1800, 60, 86_400),
    ("REPLMON_TREND_PERIODS", 30, 5, 1440),
    ("REPLMON_CANARY_POLL_MIN_MS", 450, 50, 60_000),
    ("REPLMON_CANARY_POLL_GROWTH_PERCENT", 18, 1, 100),
    ("REPLMON_CANARY_POLL_MAX_MS", 15_000, 50, 600_000),
    ("REPLMON_CANARY_BUDGET_SECONDS", 45, 1, 840),
    ("REPLMON_CANARY_DEADLINE_SECONDS", 900, 10, 604_800),
    ("REPLMON_CANARY_LATENCY_THRESHOLD_SECONDS", 900, 1, 604_800),
    ("REPLMON_CANARY_BAD_PROBES", 2, 1, 100),
    ("REPLMON_CANARY_AUDIT_PERIOD_SECONDS", 86_400, 60, 2_592_000),
];

const TEXTS: &[&str] = &[
    "REPLMON_TABLE",
    "REPLMON_PAGE_TOPIC_ARN",
    "REPLMON_CANARY_BUCKETS",
    "REPLMON_CANARY_PREFIX",
    "REPLMON_CANARY_METRICS_NAMESPACE",
    "REPLMON_WARM_UP",
];

fn number_value(min: u64, max: u64) -> BoxedStrategy<String> {
    prop_oneof![
        4 => (min..=max).prop_map(|n| n.to_string()),
        2 => (min..=max).prop_map(|n| format!(" {n}\t")),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (0..min.max(1)).prop_map(|n| n.to_string()),
        1 => prop::sample::select(
            &["-1", "+5", "1.5", "1e3", "0x10", "18446744073709551616", "٣", "10 s", "", "   "][..]
        )
        .prop_map(str::to_owned),
        1 => odd_string(),
    ]
    .boxed()
}

fn text_value(var: &'static str) -> BoxedStrategy<String> {
    let valid = match var {
        "REPLMON_TABLE" => prop_oneof![
            text_of(&format!("{ALNUM}_.-"), 0..=300),
            Just("replmon".to_owned())
        ]
        .boxed(),
        "REPLMON_PAGE_TOPIC_ARN" => prop_oneof![
            Just("arn:aws:sns:us-east-1:123456789012:pages".to_owned()),
            (
                text_of(&format!("{LOWER_DIGITS}-"), 0..=12),
                text_of(DIGITS, 0..=12),
                text_of(&format!("{ALNUM}_:-"), 0..=12),
            )
                .prop_map(|(r, a, n)| format!("arn:aws:sns:{r}:{a}:{n}")),
            prop::collection::vec(
                prop_oneof![
                    prop::sample::select(&["arn", "ARN", "aws", "sns", "sqs", "s3", ""][..])
                        .prop_map(str::to_owned),
                    unicode(0..=5),
                ],
                0..=8
            )
            .prop_map(|parts| parts.join(":")),
        ]
        .boxed(),
        "REPLMON_CANARY_BUCKETS" => prop::collection::vec(
            prop_oneof![
                (
                    text_of(LOWER_DIGITS, 1..=1),
                    text_of(&format!("{LOWER_DIGITS}.-"), 1..=61),
                    text_of(LOWER_DIGITS, 1..=1),
                )
                    .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
                text_of(&format!("{ALNUM}_. -"), 0..=70),
                Just("replmon-demo-source".to_owned()),
            ],
            0..4,
        )
        .prop_map(|parts| parts.join(","))
        .boxed(),
        "REPLMON_CANARY_PREFIX" => prop_oneof![
            Just("replmon-canary/".to_owned()),
            text_of(&format!("{ALNUM}_.-/"), 0..=24),
        ]
        .boxed(),
        "REPLMON_WARM_UP" => prop::sample::select(
            &[
                "true", "false", "TRUE", " False ", "0", "1", "", "yes", "off", "2",
            ][..],
        )
        .prop_map(str::to_owned)
        .boxed(),
        _ => text_of(&format!("{ALNUM}/_.-"), 0..=40),
    };
    prop_oneof![3 => valid, 1 => odd_string()].boxed()
}

/// A fake environment: each known variable set (to a valid or odd value) or not.
fn environment() -> BoxedStrategy<BTreeMap<&'static str, String>> {
    let numbers: Vec<_> = NUMBERS
        .iter()
        .map(|&(var, _, min, max)| {
            prop::option::weighted(0.3, number_value(min, max)).prop_map(move |v| (var, v))
        })
        .collect();
    let texts: Vec<_> = TEXTS
        .iter()
        .map(|&var| prop::option::weighted(0.85, text_value(var)).prop_map(move |v| (var, v)))
        .collect();
    (numbers, texts)
        .prop_map(|(numbers, texts)| {
            numbers
                .into_iter()
                .chain(texts)
                .filter_map(|(var, value)| value.map(|v| (var, v)))
                .collect()
        })
        .boxed()
}

/// What a numeric variable must come out as: its value, the default when unset or blank, or a
/// rejection.
fn expected_number(env: &BTreeMap<&'static str, String>, var: &str) -> Result<u64, ()> {
    let &(_, default, min, max) = NUMBERS.iter().find(|(name, ..)| *name == var).unwrap();
    match env.get(var).map(|v| v.trim()) {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(()),
        },
    }
}

/// A config error names a variable that really is missing or wrong, and says how.
fn check_config_error(
    error: &ConfigError,
    env: &BTreeMap<&'static str, String>,
) -> Result<(), TestCaseError> {
    clear(&error.to_string(), "config")?;
    match error {
        ConfigError::Missing(var) => {
            prop_assert!(error.to_string().contains(var));
            let value = env.get(var).map(|v| v.trim()).unwrap_or("");
            if *var == "REPLMON_CANARY_BUCKETS" {
                prop_assert!(value.split(',').all(|b| b.trim().is_empty()), "{value:?}");
            } else {
                prop_assert!(value.is_empty(), "{var} is set: {value:?}");
            }
        }
        ConfigError::Invalid { var, value, reason } => {
            prop_assert!(error.to_string().contains(var));
            prop_assert!(reason.split_whitespace().count() >= 3, "{reason:?}");
            if NUMBERS.iter().any(|(name, ..)| name == var) {
                if *var == "REPLMON_LEDGER_TTL_DAYS" && reason.contains("DEADLINE") {
                    // The TTL must outlive the canary's deadline: checked after parsing.
                    return Ok(());
                }
                prop_assert_eq!(env.get(var), Some(value));
                prop_assert!(
                    expected_number(env, var).is_err(),
                    "{var}={value:?} is valid"
                );
            } else {
                prop_assert!(TEXTS.contains(var), "unknown variable {var}");
                // The value as set, or trimmed.
                let raw = env.get(var).map(String::as_str).unwrap_or("<unset>");
                prop_assert!(
                    value == raw
                        || value == raw.trim()
                        || *value == raw.trim().to_ascii_lowercase(),
                    "{value:?} vs {raw:?}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn configuration_from_environment() {
    check(environment(), |env| {
        let lookup = |name: &str| env.get(name).cloned();
        let number = |var: &str| expected_number(&env, var);
        let table = env.get("REPLMON_TABLE").map(|t| t.trim().to_owned());
        let topic = env
            .get("REPLMON_PAGE_TOPIC_ARN")
            .map(|t| t.trim().to_owned());

        let aws = AwsSettings::from_env(&lookup);
        match &aws {
            Ok(aws) => {
                prop_assert_eq!(
                    Ok(aws.operation_timeout.as_millis() as u64),
                    number("REPLMON_AWS_OPERATION_TIMEOUT_MS")
                );
                prop_assert_eq!(
                    Ok(aws.attempt_timeout.as_millis() as u64),
                    number("REPLMON_AWS_ATTEMPT_TIMEOUT_MS")
                );
                prop_assert_eq!(
                    Ok(aws.connect_timeout.as_millis() as u64),
                    number("REPLMON_AWS_CONNECT_TIMEOUT_MS")
                );
                prop_assert_eq!(
                    Ok(u64::from(aws.max_attempts)),
                    number("REPLMON_AWS_MAX_ATTEMPTS")
                );
            }
            Err(error) => check_config_error(error, &env)?,
        }

        match ReplicationEventsConfig::from_env(&lookup) {
            Ok(config) => {
                prop_assert_eq!(Some(&config.table), table.as_ref());
                prop_assert_eq!(Some(&config.page_topic_arn), topic.as_ref());
                prop_assert_eq!(Ok(&config.aws), aws.as_ref());
                let m = &config.monitor;
                prop_assert_eq!(
                    Ok(m.summary_window.num_seconds() as u64),
                    number("REPLMON_SUMMARY_WINDOW_SECONDS")
                );
                prop_assert_eq!(Ok(m.sample_keys as u64), number("REPLMON_PAGE_SAMPLE_KEYS"));
                prop_assert_eq!(
                    Ok(m.ledger_ttl.num_days() as u64),
                    number("REPLMON_LEDGER_TTL_DAYS")
                );
                prop_assert_eq!(
                    Ok(m.page_lease.num_seconds() as u64),
                    number("REPLMON_PAGE_LEASE_SECONDS")
                );
                prop_assert_eq!(
                    Ok(m.concurrency as u64),
                    number("REPLMON_WRITE_CONCURRENCY")
                );
            }
            Err(error) => check_config_error(&error, &env)?,
        }

        match AlarmEventsConfig::from_env(&lookup) {
            Ok(config) => {
                prop_assert_eq!(Some(&config.table), table.as_ref());
                prop_assert_eq!(Some(&config.page_topic_arn), topic.as_ref());
                prop_assert_eq!(Ok(&config.aws), aws.as_ref());
                let a = &config.alarm;
                prop_assert_eq!(
                    Ok(a.flap.max_transitions as u64),
                    number("REPLMON_FLAP_TRANSITIONS")
                );
                prop_assert_eq!(
                    Ok(a.flap.window.num_seconds() as u64),
                    number("REPLMON_FLAP_WINDOW_SECONDS")
                );
                prop_assert_eq!(
                    Ok(u64::from(a.trend_periods)),
                    number("REPLMON_TREND_PERIODS")
                );
                prop_assert_eq!(
                    Ok(a.ledger_ttl.num_days() as u64),
                    number("REPLMON_LEDGER_TTL_DAYS")
                );
                prop_assert_eq!(
                    Ok(a.pending_lease.num_seconds() as u64),
                    number("REPLMON_PAGE_LEASE_SECONDS")
                );
            }
            Err(error) => check_config_error(&error, &env)?,
        }

        match CanaryConfig::from_env(&lookup) {
            Ok(config) => {
                prop_assert_eq!(Some(&config.table), table.as_ref());
                prop_assert_eq!(Some(&config.page_topic_arn), topic.as_ref());
                prop_assert_eq!(Ok(&config.aws), aws.as_ref());
                // The buckets listed, each once, in order; all valid names.
                let mut buckets: Vec<String> = Vec::new();
                for bucket in env["REPLMON_CANARY_BUCKETS"].split(',').map(str::trim) {
                    if !bucket.is_empty() && !buckets.iter().any(|b| b == bucket) {
                        buckets.push(bucket.to_owned());
                    }
                }
                prop_assert_eq!(&config.buckets, &buckets);
                for bucket in &config.buckets {
                    prop_assert!(
                        (3..=63).contains(&bucket.len())
                            && bucket.bytes().all(|b| b.is_ascii_lowercase()
                                || b.is_ascii_digit()
                                || b == b'.'
                                || b == b'-'),
                        "{bucket:?}"
                    );
                }
                let segment = config.canary.segment.as_str();
                prop_assert!(
                    segment.ends_with('/') && !segment.starts_with('/') && !segment.contains("//")
                );
                prop_assert!(!config.metrics_namespace.trim().is_empty());
                let c = &config.canary;
                prop_assert_eq!(
                    Ok(c.budget.as_secs()),
                    number("REPLMON_CANARY_BUDGET_SECONDS")
                );
                prop_assert_eq!(
                    Ok(c.deadline.num_seconds() as u64),
                    number("REPLMON_CANARY_DEADLINE_SECONDS")
                );
                prop_assert_eq!(
                    Ok(c.latency_threshold.num_seconds() as u64),
                    number("REPLMON_CANARY_LATENCY_THRESHOLD_SECONDS")
                );
                prop_assert_eq!(
                    Ok(u64::from(c.bad_probes_to_page)),
                    number("REPLMON_CANARY_BAD_PROBES")
                );
                prop_assert_eq!(
                    Ok(c.audit_period.num_seconds() as u64),
                    number("REPLMON_CANARY_AUDIT_PERIOD_SECONDS")
                );
                prop_assert_eq!(
                    Ok(c.ttl.num_days() as u64),
                    number("REPLMON_LEDGER_TTL_DAYS")
                );
                prop_assert_eq!(
                    Ok(c.poll.min_gap.as_millis() as u64),
                    number("REPLMON_CANARY_POLL_MIN_MS")
                );
                prop_assert_eq!(
                    Ok(c.poll.max_gap.as_millis() as u64),
                    number("REPLMON_CANARY_POLL_MAX_MS")
                );
                prop_assert!(c.poll.growth > 0.0 && c.poll.growth <= 1.0);
                prop_assert!(c.ttl > c.deadline);
                // The schedule a config allows never panics (min above max included).
                for waited in [0u64, 1, 1_000, 86_400_000] {
                    let gap = c.poll.next_gap(Duration::from_millis(waited));
                    prop_assert!(gap >= c.poll.min_gap);
                }
            }
            Err(error) => check_config_error(&error, &env)?,
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Small parsers of stored codes and names
// ---------------------------------------------------------------------------------------------

/// Codes read back from the ledger, event names, key segments, ARNs and URL-encoded keys: any
/// text is parsed or refused without a panic, and what the code writes reads back the same.
#[test]
fn codes_names_and_keys() {
    let strategy = (
        prop_oneof![
            arbitrary_input(),
            odd_string(),
            (
                prop::sample::select(
                    &[
                        "RECOVERED:",
                        "FLAPPING:",
                        "FAILED:",
                        "LATE",
                        "OPENED",
                        "NOT_TRACKED"
                    ][..]
                ),
                text_of(&format!("{ALNUM}-+:"), 0..=24),
            )
                .prop_map(|(head, tail)| format!("{head}{tail}"))
        ],
        any::<i64>(),
        any::<usize>(),
        unicode(0..=30),
    );
    check(strategy, |(text, seconds, transitions, key)| {
        // Alarm notification codes (stored with pending alarm records).
        let _ = AlarmNotification::parse(&text);
        for n in [
            AlarmNotification::Opened,
            AlarmNotification::InsufficientData,
            AlarmNotification::Recovered {
                open_seconds: seconds,
            },
            AlarmNotification::Flapping { transitions },
        ] {
            prop_assert_eq!(AlarmNotification::parse(&n.code()), Some(n));
        }
        // Alarm states.
        if let Some(state) = AlarmState::parse(&text) {
            prop_assert_eq!(state.as_str(), text.as_str());
        }
        // Incident causes (stored in ledger keys); a failure reason may be any text.
        if let Some(cause) = IncidentCause::parse(&text) {
            prop_assert_eq!(cause.code(), text.clone());
        }
        let failure = IncidentCause::Failure(key.clone());
        prop_assert_eq!(IncidentCause::parse(&failure.code()), Some(failure));
        // Event names.
        if let Some(kind) = ReplicationEventKind::from_event_name(&text) {
            prop_assert!(text.ends_with(kind.as_str()));
        }
        // ARNs and key segments.
        prop_assert!(text.ends_with(bucket_name_from_arn(&text)));
        prop_assert!(text.ends_with(bucket_from_arn(&text)));
        match CanarySegment::new(&text) {
            Ok(segment) => {
                let s = segment.as_str();
                prop_assert!(s.ends_with('/') && !s.starts_with('/') && !s.contains("//"));
            }
            Err(reason) => clear(&reason, "CanarySegment::new")?,
        }
        // URL-encoded keys: any text decodes without a panic; undecodable text is kept.
        let decoded = decode_key(&text);
        if !text.contains(['+', '%']) {
            prop_assert_eq!(&decoded, &text);
        }
        Ok(())
    });
}
