//! Issue 7, "Duplicate and reordered delivery": every fixture of a function delivered three times
//! and in shuffled order must leave the ledger, the incidents and the pages as one ordered delivery
//! of the same fixtures does. Lambda, S3, SNS, SQS and EventBridge deliver at least once and in no
//! particular order, so the handlers must be idempotent and (where the design allows) commutative.
//!
//! Three kinds of checks:
//! - property tests over 200 seeds with the in-memory fakes and a fixed clock, driving the real
//!   `ReplicationMonitor::handle` and `AlarmMonitor::handle` (the canary's, which needs tokio's
//!   paused time, is in shared/tests/redelivery_canary.rs);
//! - late redeliveries (after the summary window, after the alarm's pending lease) change nothing;
//! - the same comparison for three seeds against the local stack (moto): the real DynamoDB, SNS
//!   and CloudWatch adapters in-process, ledger items scanned from DynamoDB and pages drained from
//!   the SQS inbox subscribed to the page topic; for replication-events also with six deliveries
//!   in flight at once (duplicates racing each other, as concurrent Lambda instances do).
//!
//! What is order-independent, and what differs by design (each spelled out where it is checked):
//! - replication-events: object records, incident memberships and counts, incident spans, pages
//!   sent per incident and the answer to every delivery are the same. A page describes its
//!   incident at the moment it went out (objects counted so far, their time span, a sample of
//!   keys; the incident keeps that count as `event_count_at_last_page`), and which events came
//!   before it depends on the order: those lines and that field may differ, nothing else.
//! - alarm-events: a change not newer than the stored state is ignored (by design: CloudWatch
//!   sends the full state, the newest one wins). So a reordered delivery behaves exactly like one
//!   ordered delivery of the changes that were the newest of their alarm when they first arrived.
//!   The final record of every alarm equals the ordered delivery's, except that its flapping
//!   memory (`transitions`) may lack the ignored changes; pages differ only for alarms whose
//!   changes arrived out of order; no change is ever notified twice.

use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use replmon_shared::alarm::monitor::{AlarmMonitor, AlarmSettings, AlarmStore};
use replmon_shared::alarm::{parse_payload, AlarmInput, AlarmRecord};
use replmon_shared::aws::{CloudWatchMetrics, DynamoDbLedger, SnsNotifier};
use replmon_shared::clock::SystemClock;
use replmon_shared::delivery::page::Page;
use replmon_shared::fakes::{
    thrice_shuffled, FixedMetrics, InMemoryLedger, ManualClock, RecordingNotifier,
};
use replmon_shared::incident::{Incident, IncidentCause};
use replmon_shared::ledger::ObjectRecord;
use replmon_shared::replication::{HandlerError, MonitorSettings, ReplicationMonitor};
use replmon_tests::{repo_root, sdk_config, MotoServer, ReceivedPage, Stack, StackNames};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Seeds of the in-memory property tests (each a different shuffle of three copies of every fixture).
const SEEDS: u64 = 200;
/// Seeds of the local-stack tests (each costs a freshly provisioned stack).
const STACK_SEEDS: [u64; 3] = [7, 1_000_003, 0xC0FFEE];

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// One event file: its path under `events/` and its text.
#[derive(Debug, Clone)]
struct Fixture {
    name: String,
    text: String,
}

fn events_dir() -> std::path::PathBuf {
    repo_root().join("events")
}

/// Every `.json` under `events/<dir>` (recursively), as names relative to `events/`.
fn json_files(dir: &str) -> BTreeSet<String> {
    fn walk(path: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(path)
            .expect("fixture directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != "manifest.json")
            {
                let name = path.strip_prefix(base).expect("under events/");
                out.insert(name.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&events_dir().join(dir), &events_dir(), &mut out);
    out
}

fn fixture(name: &str) -> Fixture {
    Fixture {
        name: name.to_owned(),
        text: std::fs::read_to_string(events_dir().join(name)).expect("fixture readable"),
    }
}

/// What on-call receives, comparable between the fakes (a [`Page`]) and the stack (the SNS
/// envelope read from the inbox queue).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PageView {
    subject: String,
    attributes: BTreeMap<String, String>,
    body: String,
}

impl PageView {
    fn of(page: &Page) -> Self {
        PageView {
            subject: page.subject().to_owned(),
            attributes: page.attributes().into_iter().collect(),
            body: page.body().to_owned(),
        }
    }

    fn received(page: &ReceivedPage) -> Self {
        PageView {
            subject: page.subject.clone(),
            attributes: page.attributes.clone(),
            body: page.message.clone(),
        }
    }

    fn attribute(&self, name: &str) -> &str {
        self.attributes.get(name).map_or("", String::as_str)
    }

    /// The body without the lines starting with any of `prefixes`.
    fn without_lines(mut self, prefixes: &[&str]) -> Self {
        self.body = self
            .body
            .lines()
            .filter(|line| !prefixes.iter().any(|p| line.starts_with(p)))
            .collect::<Vec<_>>()
            .join("\n");
        self
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

/// Where a ledger item differs between two deliveries, for readable failures.
fn diff_items(
    expected: &[BTreeMap<String, String>],
    actual: &[BTreeMap<String, String>],
) -> String {
    let expected: BTreeSet<_> = expected.iter().collect();
    let actual: BTreeSet<_> = actual.iter().collect();
    format!(
        "only in the ordered delivery: {:#?}\nonly in the shuffled one: {:#?}",
        expected.difference(&actual).collect::<Vec<_>>(),
        actual.difference(&expected).collect::<Vec<_>>()
    )
}

// ---------------------------------------------------------------------------------------------
// replication-events
// ---------------------------------------------------------------------------------------------

/// The replication-events fixtures in the manifest's order (the "one ordered delivery"): every
/// file of `direct/`, `sns/`, `sqs/`, `sqs-sns/` and `bad/`, test events and bad input included.
fn replication_fixtures() -> Vec<Fixture> {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(events_dir().join("manifest.json")).expect("manifest"),
    )
    .expect("manifest is JSON");
    let names: Vec<String> = manifest["fixtures"]
        .as_array()
        .expect("fixtures list")
        .iter()
        .map(|f| f["file"].as_str().expect("file name").to_owned())
        .collect();
    let on_disk: BTreeSet<String> = ["direct", "sns", "sqs", "sqs-sns", "bad"]
        .into_iter()
        .flat_map(json_files)
        .collect();
    assert_eq!(
        names.iter().cloned().collect::<BTreeSet<_>>(),
        on_disk,
        "every replication fixture must be in events/manifest.json (and so in this test)"
    );
    names.iter().map(|n| fixture(n)).collect()
}

/// What Lambda hears back: success, the SQS batch item failures, or an error (retry).
/// (The report of a direct/SNS invocation counts new events versus duplicates, which of course
/// differs between a first delivery and a redelivery; the outcome must not.)
fn replication_outcome(result: Result<Value, HandlerError>) -> String {
    match result {
        Err(_) => "error".to_owned(),
        Ok(value) => match value.get("batchItemFailures").and_then(Value::as_array) {
            Some(failures) => {
                let ids = sorted(
                    failures
                        .iter()
                        .map(|f| f["itemIdentifier"].as_str().unwrap_or("?").to_owned())
                        .collect(),
                );
                format!("ok, batch item failures {ids:?}")
            }
            None => "ok".to_owned(),
        },
    }
}

/// Lines of a replication page describing its incident at the moment the page went out: the
/// objects counted so far, the span of their event times, a sample of their keys and, on the
/// stack, since when the incident is open by the wall clock. Which events had been recorded before
/// the page depends on the delivery order (the storm batch's eight `DstPutObjectNotPermitted`
/// failures may come before or after `failed.json`'s, which belongs to the same incident), so
/// these lines legitimately differ. Everything else (which incident, severity, urgency, reason,
/// meaning, fix, page type, attributes, subject) must not.
const MOMENT_LINES: [&str; 8] = [
    "Objects failed:",
    "Objects late:",
    "Objects not tracked:",
    "Arrived since:",
    "First seen:",
    "Last seen:",
    "Sample of affected objects",
    "  - ",
];

/// The number after "Objects <noun>: " in a replication page body.
fn objects_in_page(page: &PageView) -> u64 {
    page.body
        .lines()
        .filter(|l| l.starts_with("Objects "))
        .find_map(|l| l.rsplit(": ").next()?.trim().parse().ok())
        .unwrap_or(0)
}

struct ReplicationWorld {
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    clock: ManualClock,
}

/// The final state of an in-memory replication run.
#[derive(Debug, PartialEq)]
struct ReplicationState {
    objects: Vec<ObjectRecord>,
    incidents: Vec<Incident>,
    events: usize,
    pages: Vec<PageView>,
}

impl ReplicationWorld {
    fn new() -> Self {
        ReplicationWorld {
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            clock: ManualClock::new(fixed_now()),
        }
    }

    async fn deliver(&self, fixtures: &[Fixture], order: &[usize]) -> Vec<String> {
        let monitor = ReplicationMonitor::new(
            &self.ledger,
            &self.notifier,
            &self.clock,
            MonitorSettings::default(),
        );
        let mut outcomes = Vec::with_capacity(order.len());
        for &i in order {
            outcomes.push(replication_outcome(monitor.handle(&fixtures[i].text).await));
        }
        outcomes
    }

    fn state(&self) -> ReplicationState {
        ReplicationState {
            objects: self.ledger.objects(),
            incidents: self
                .ledger
                .incidents()
                .into_iter()
                .map(|mut incident| {
                    // The count the incident's last page reported: how many of its events had
                    // arrived when the page went out, which depends on the order (see
                    // MOMENT_LINES). Checked below against the page itself instead.
                    incident.event_count_at_last_page = 0;
                    incident
                })
                .collect(),
            events: self.ledger.event_count(),
            pages: sorted(
                self.notifier
                    .pages()
                    .iter()
                    .map(|p| PageView::of(p).without_lines(&MOMENT_LINES))
                    .collect(),
            ),
        }
    }

    /// Every page reported at least one and at most all of its incident's final objects.
    fn check_page_counts(&self) {
        let incidents = self.ledger.incidents();
        for page in self.notifier.pages() {
            let view = PageView::of(&page);
            let incident = incidents
                .iter()
                .find(|i| {
                    let reason = match &i.key.cause {
                        IncidentCause::Failure(reason) => reason.as_str(),
                        _ => "",
                    };
                    i.key.cause.kind() == view.attribute("kind")
                        && reason == view.attribute("reason")
                        && i.key.destination_bucket == view.attribute("destination_bucket")
                        && i.key.rule_id == view.attribute("rule_id")
                })
                .expect("every page belongs to an incident");
            let counted = objects_in_page(&view);
            assert!(
                (1..=incident.event_count).contains(&counted),
                "page reports {counted} objects, its incident ends with {}:\n{}",
                incident.event_count,
                view.body
            );
        }
    }
}

fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 14, 12, 30, 0)
        .single()
        .expect("valid time")
}

#[tokio::test]
async fn replication_events_shuffled_triple_delivery_matches_one_ordered_delivery() {
    let fixtures = replication_fixtures();
    let ordered: Vec<usize> = (0..fixtures.len()).collect();
    let reference = ReplicationWorld::new();
    let reference_outcomes = reference.deliver(&fixtures, &ordered).await;
    let expected = reference.state();
    // The reference itself is what the manifest says: sanity, so an empty run cannot pass.
    assert_eq!(expected.objects.len(), 14, "{:#?}", expected.objects);
    assert_eq!(
        expected.pages.len(),
        6,
        "4 failure incidents, 1 late, 1 not-tracked notice"
    );
    // Three bad direct/SNS payloads fail; the mixed SQS batch reports its two bad messages.
    assert_eq!(
        reference_outcomes.iter().filter(|o| *o == "error").count(),
        3,
        "{reference_outcomes:#?}"
    );
    assert_eq!(
        reference_outcomes
            .iter()
            .filter(|o| o.starts_with("ok, batch item failures [\""))
            .count(),
        1,
        "{reference_outcomes:#?}"
    );
    reference.check_page_counts();

    for seed in 0..SEEDS {
        let order = thrice_shuffled(fixtures.len(), seed);
        let world = ReplicationWorld::new();
        let outcomes = world.deliver(&fixtures, &order).await;
        // Every delivery of a fixture gets the answer its one ordered delivery got: a redelivered
        // bad message fails again (to its DLQ), a redelivered good one succeeds again.
        for (&i, outcome) in order.iter().zip(&outcomes) {
            assert_eq!(
                outcome, &reference_outcomes[i],
                "seed {seed}: {} answered differently",
                fixtures[i].name
            );
        }
        let state = world.state();
        assert_eq!(
            state.objects, expected.objects,
            "seed {seed}: object records"
        );
        assert_eq!(
            state.incidents, expected.incidents,
            "seed {seed}: incidents (counts, spans, pages sent)"
        );
        assert_eq!(state.events, expected.events, "seed {seed}: event count");
        assert_eq!(state.pages, expected.pages, "seed {seed}: pages");
        world.check_page_counts();
    }
}

/// Redeliveries that come late (past the 15-minute summary window, when a new event would page a
/// summary) still change nothing: no page, no count, no incident field, nothing at all; and each
/// answers what the first delivery answered.
#[tokio::test]
async fn replication_events_late_redeliveries_change_nothing() {
    let fixtures = replication_fixtures();
    let ordered: Vec<usize> = (0..fixtures.len()).collect();
    for seed in 0..SEEDS / 4 {
        let world = ReplicationWorld::new();
        let first = world.deliver(&fixtures, &ordered).await;
        let objects = world.ledger.objects();
        // Nothing normalised here: the very same incidents and pages, word for word.
        let incidents = world.ledger.incidents();
        let pages = world.notifier.pages();
        for i in thrice_shuffled(fixtures.len(), seed) {
            world.clock.advance(chrono::Duration::minutes(16));
            let again = world.deliver(&fixtures, &[i]).await;
            assert_eq!(again[0], first[i], "seed {seed}: {}", fixtures[i].name);
        }
        assert_eq!(world.ledger.objects(), objects, "seed {seed}");
        assert_eq!(world.ledger.incidents(), incidents, "seed {seed}");
        assert_eq!(world.notifier.pages(), pages, "seed {seed}");
    }
}

/// Ledger items without what legitimately depends on the wall clock or the delivery.
fn normalise_replication_item(mut item: BTreeMap<String, String>) -> BTreeMap<String, String> {
    // Every item: the TTL is "now + 90 days" at the item's last write, by the wall clock.
    item.remove("expires_at");
    match item.get("entity").map(String::as_str) {
        Some("object") => {
            // Counts the writes that changed the record: an earlier failure arriving after a
            // later one rewrites it, in the other order the second merge changes nothing and
            // writes nothing. The merged content itself is order-independent and kept.
            item.remove("revision");
        }
        Some("incident") => {
            // Wall-clock times of the first touch, the latest recording and the page.
            for field in [
                "opened_at",
                "last_recorded_at",
                "last_page_at",
                "first_page_at",
            ] {
                item.remove(field);
            }
            // How many events had arrived when the page went out (see MOMENT_LINES).
            item.remove("event_count_at_last_page");
            // No claim may be left behind in either delivery.
            assert!(
                !item.contains_key("page_claim") && !item.contains_key("page_claim_at"),
                "page claim left on {item:?}"
            );
        }
        _ => {}
    }
    item
}

/// A freshly provisioned stack on the (reset) moto server.
async fn fresh_stack(moto: &MotoServer) -> (aws_config::SdkConfig, Stack) {
    moto.reset().await.expect("moto reset");
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default())
        .await
        .expect("provision");
    (sdk, stack)
}

struct StackRun {
    outcomes: Vec<String>,
    items: Vec<BTreeMap<String, String>>,
    pages: Vec<PageView>,
}

/// Deliver `order` to the real adapters on a fresh stack, `in_flight` invocations at a time.
/// One at a time, each delivery's first answer is kept. Concurrently, as Lambda runs a duplicate
/// in another instance, an invocation may be told to retry (another one holds the incident's
/// page claim): it is retried like Lambda and SQS would, a few times, and its last answer kept.
async fn replication_on_stack(
    moto: &MotoServer,
    fixtures: &[Fixture],
    order: &[usize],
    in_flight: usize,
) -> StackRun {
    let (sdk, stack) = fresh_stack(moto).await;
    let monitor = ReplicationMonitor::new(
        DynamoDbLedger::new(&sdk, &stack.names.table),
        SnsNotifier::new(&sdk, &stack.topic_arn),
        SystemClock,
        MonitorSettings::default(),
    );
    let monitor = &monitor;
    let outcomes: Vec<String> = futures::stream::iter(order.iter().copied())
        .map(|i| async move {
            let mut outcome = replication_outcome(monitor.handle(&fixtures[i].text).await);
            let mut attempts = 1;
            // An error, or SQS batch item failures: retried (bad input keeps failing: to the DLQ).
            let retry = |outcome: &str| outcome == "error" || outcome.contains("[\"");
            while in_flight > 1 && retry(&outcome) && attempts < 5 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                outcome = replication_outcome(monitor.handle(&fixtures[i].text).await);
                attempts += 1;
            }
            outcome
        })
        .buffered(in_flight.max(1))
        .collect()
        .await;
    let items: Vec<_> = stack
        .ledger_items()
        .await
        .expect("ledger items")
        .into_iter()
        .map(normalise_replication_item)
        .collect();
    let mut moment_and_wall_clock = MOMENT_LINES.to_vec();
    // "Incident open:  since <opened_at>", the wall-clock time of the incident's first touch.
    moment_and_wall_clock.push("Incident open:");
    let pages = sorted(
        stack
            .drain_pages()
            .await
            .expect("pages")
            .iter()
            .map(|p| PageView::received(p).without_lines(&moment_and_wall_clock))
            .collect(),
    );
    StackRun {
        outcomes,
        items,
        pages,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_events_on_local_stack_shuffled_triple_delivery_matches_ordered() {
    let fixtures = replication_fixtures();
    let moto = MotoServer::start().expect("moto server");
    let ordered: Vec<usize> = (0..fixtures.len()).collect();
    let reference = replication_on_stack(&moto, &fixtures, &ordered, 1).await;
    assert_eq!(
        reference
            .items
            .iter()
            .filter(|i| i.get("entity").map(String::as_str) == Some("object"))
            .count(),
        14
    );
    assert_eq!(reference.pages.len(), 6, "{:#?}", reference.pages);
    // One at a time for every seed, then six at a time (duplicates racing each other) for two.
    let runs = STACK_SEEDS
        .iter()
        .map(|&seed| (seed, 1))
        .chain(STACK_SEEDS.iter().take(2).map(|&seed| (seed, 6)));
    for (seed, in_flight) in runs {
        let order = thrice_shuffled(fixtures.len(), seed);
        let run = replication_on_stack(&moto, &fixtures, &order, in_flight).await;
        for (&i, outcome) in order.iter().zip(&run.outcomes) {
            assert_eq!(
                outcome, &reference.outcomes[i],
                "seed {seed} ({in_flight} in flight): {} answered differently",
                fixtures[i].name
            );
        }
        assert!(
            run.items == reference.items,
            "seed {seed} ({in_flight} in flight): ledger items differ\n{}",
            diff_items(&reference.items, &run.items)
        );
        assert_eq!(
            run.pages, reference.pages,
            "seed {seed} ({in_flight} in flight): pages"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// alarm-events
// ---------------------------------------------------------------------------------------------

/// An alarm fixture and the state change it carries (bad input carries none).
#[derive(Debug, Clone)]
struct AlarmFixture {
    fixture: Fixture,
    /// Alarm key and state time.
    change: Option<(String, DateTime<Utc>)>,
}

/// Every alarm fixture (sequences and bad input included), in the order the changes happened:
/// by state time, ties and inputs without a change by name. This is "one ordered delivery".
fn alarm_fixtures() -> Vec<AlarmFixture> {
    let mut fixtures: Vec<AlarmFixture> = json_files("alarm")
        .iter()
        .map(|name| {
            let fixture = fixture(name);
            let changes: Vec<(String, DateTime<Utc>)> = parse_payload(&fixture.text)
                .map(|inputs| {
                    inputs
                        .into_iter()
                        .filter_map(|input| match input {
                            Ok(AlarmInput::Change(change)) => {
                                Some((change.alarm_key(), change.state_time))
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert!(changes.len() <= 1, "{name}: one change per fixture");
            AlarmFixture {
                fixture,
                change: changes.into_iter().next(),
            }
        })
        .collect();
    fixtures.sort_by(|a, b| {
        (a.change.as_ref().map(|c| c.1), &a.fixture.name)
            .cmp(&(b.change.as_ref().map(|c| c.1), &b.fixture.name))
    });
    fixtures
}

/// The deliveries of `order` that changed something: a change is applied only when it is newer
/// than every change of its alarm delivered before it (the monitor ignores a change not newer
/// than the stored state). This is the by-design oracle for reordered alarm changes.
fn applied_changes(fixtures: &[AlarmFixture], order: &[usize]) -> Vec<usize> {
    let mut newest: HashMap<&str, DateTime<Utc>> = HashMap::new();
    let mut applied = Vec::new();
    for &i in order {
        if let Some((key, time)) = &fixtures[i].change {
            if newest.get(key.as_str()).is_none_or(|n| time > n) {
                newest.insert(key, *time);
                applied.push(i);
            }
        }
    }
    applied
}

fn alarm_keys(fixtures: &[AlarmFixture]) -> BTreeSet<String> {
    fixtures
        .iter()
        .filter_map(|f| f.change.as_ref().map(|c| c.0.clone()))
        .collect()
}

/// The alarm name of a key (`account#region#name`; names may hold `#`, account and region not).
fn alarm_name(key: &str) -> &str {
    key.splitn(3, '#').nth(2).unwrap_or(key)
}

/// What an alarm delivery left: every alarm's record, and the pages in the order they were sent
/// (on the stack, where the inbox does not keep order, sorted).
#[derive(Debug)]
struct AlarmRun {
    records: BTreeMap<String, Option<AlarmRecord>>,
    pages: Vec<PageView>,
}

async fn alarm_records<S: AlarmStore>(
    store: &S,
    keys: &BTreeSet<String>,
) -> BTreeMap<String, Option<AlarmRecord>> {
    let mut records = BTreeMap::new();
    for key in keys {
        // The revision counts writes (two per notifying change: pending, then sent), so it
        // depends on how many changes were applied; the record is compared without it.
        let record = store
            .alarm(key)
            .await
            .expect("alarm record")
            .map(|(r, _)| r);
        records.insert(key.clone(), record);
    }
    records
}

/// The checks shared by the in-memory and the stack tests.
/// - `reference`: one ordered delivery; `shuffled`: the seed's triple shuffled delivery;
///   `replay`: one ordered delivery of the changes the shuffled delivery applied.
fn check_alarm_delivery(
    seed: u64,
    fixtures: &[AlarmFixture],
    order: &[usize],
    reference: &AlarmRun,
    shuffled: &AlarmRun,
    replay: &AlarmRun,
) {
    // 1. Exactly the by-design behaviour: duplicates and stale changes contributed nothing, the
    //    rest did what one delivery of them does (full records, every page word for word, and
    //    in the same order where order is observable).
    assert_eq!(
        shuffled.records, replay.records,
        "seed {seed}: alarm records versus one delivery of the applied changes"
    );
    assert_eq!(
        shuffled.pages, replay.pages,
        "seed {seed}: pages versus one delivery of the applied changes"
    );

    // 2. The final records equal the ordered delivery's: the newest change of every alarm always
    //    applies last, whatever came before. Except `transitions`, the flapping detector's memory
    //    of recent changes: a change ignored as stale is not remembered, so the shuffled record
    //    may remember fewer of them, never others.
    for (key, expected) in &reference.records {
        let actual = shuffled.records.get(key).cloned().flatten();
        let expected = expected.clone().expect("every alarm has a record");
        let mut actual = actual.unwrap_or_else(|| panic!("seed {seed}: no record for {key}"));
        assert!(
            actual
                .transitions
                .iter()
                .all(|t| expected.transitions.contains(t)),
            "seed {seed}: {key} remembers transitions the ordered delivery does not: {:?} vs {:?}",
            actual.transitions,
            expected.transitions
        );
        actual.transitions = expected.transitions.clone();
        assert_eq!(actual, expected, "seed {seed}: final record of {key}");
    }

    // 3. No notification is sent twice: not for a redelivery, and not for one change delivered
    //    both through EventBridge and through SNS (failed-operations-alarm.json and
    //    sns-alarm.json). A page's first line names the alarm, its state and the state time.
    let mut seen = BTreeSet::new();
    for page in &shuffled.pages {
        let first = page.body.lines().next().unwrap_or("").to_owned();
        assert!(
            seen.insert(first.clone()),
            "seed {seed}: notified twice: {first}"
        );
    }

    // 4. Pages differ from the ordered delivery's only for alarms whose changes arrived out of
    //    order: when every change of an alarm first arrived in time order (and, for two
    //    deliveries of one change, the same one first), its pages are the ordered delivery's,
    //    word for word. Otherwise an older change arriving after a newer one is ignored, so its
    //    page is missing, and the pages of the changes around it may differ: a RECOVERED notice
    //    counts from the ALARM it followed, a FLAPPING page counts the transitions it saw.
    let applied = applied_changes(fixtures, order);
    let all: Vec<usize> = (0..fixtures.len()).collect();
    let reference_applied = applied_changes(fixtures, &all);
    for key in alarm_keys(fixtures) {
        let of_alarm = |indices: &[usize]| -> Vec<usize> {
            indices
                .iter()
                .copied()
                .filter(|&i| fixtures[i].change.as_ref().is_some_and(|c| c.0 == key))
                .collect()
        };
        if of_alarm(&applied) == of_alarm(&reference_applied) {
            let pages_of = |run: &AlarmRun| -> Vec<PageView> {
                sorted(
                    run.pages
                        .iter()
                        .filter(|p| p.attribute("alarm_name") == alarm_name(&key))
                        .cloned()
                        .collect(),
                )
            };
            assert_eq!(
                pages_of(shuffled),
                pages_of(reference),
                "seed {seed}: {key} got its changes in order, so its pages must not differ"
            );
        }
    }
}

struct AlarmWorld {
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    metrics: FixedMetrics,
    clock: ManualClock,
}

impl AlarmWorld {
    fn new() -> Self {
        AlarmWorld {
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            metrics: FixedMetrics::default(),
            clock: ManualClock::new(fixed_now()),
        }
    }

    async fn deliver(fixtures: &[AlarmFixture], order: &[usize]) -> AlarmRun {
        let world = AlarmWorld::new();
        let monitor = AlarmMonitor::new(
            &world.ledger,
            &world.notifier,
            &world.metrics,
            &world.clock,
            AlarmSettings::default(),
        );
        for &i in order {
            // Bad input is acknowledged, store and publish never fail here: every call succeeds.
            let answer = monitor.handle(&fixtures[i].fixture.text).await;
            assert!(answer.is_ok(), "{}: {answer:?}", fixtures[i].fixture.name);
        }
        AlarmRun {
            records: alarm_records(&world.ledger, &alarm_keys(fixtures)).await,
            pages: world.notifier.pages().iter().map(PageView::of).collect(),
        }
    }
}

#[tokio::test]
async fn alarm_events_shuffled_triple_delivery_matches_one_ordered_delivery() {
    let fixtures = alarm_fixtures();
    let all: Vec<usize> = (0..fixtures.len()).collect();
    let reference = AlarmWorld::deliver(&fixtures, &all).await;
    // Sanity of the reference (chronological order of all fixtures): 6 alarms; the latency alarm
    // opens and recovers at 03:00/03:20, flaps from 04:00 (2 pages, 2 notices, then one flapping
    // page and held), insufficient data at 05:42, opens and recovers the next day.
    assert_eq!(reference.records.len(), 6, "{:#?}", reference.records);
    let kinds: Vec<&str> = reference
        .pages
        .iter()
        .filter(|p| p.attribute("alarm_name") == "replmon-demo-source-replication-latency")
        .map(|p| p.attribute("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "alarm",
            "alarm-recovered",
            "alarm",
            "alarm-recovered",
            "alarm",
            "alarm-recovered",
            "alarm-flapping",
            "alarm-insufficient-data",
            "alarm",
            "alarm-recovered"
        ]
    );
    assert_eq!(reference.pages.len(), 10 + 2 + 4, "{:#?}", reference.pages);

    let mut reordered_alarms = 0;
    for seed in 0..SEEDS {
        let order = thrice_shuffled(fixtures.len(), seed);
        let shuffled = AlarmWorld::deliver(&fixtures, &order).await;
        let replay = AlarmWorld::deliver(&fixtures, &applied_changes(&fixtures, &order)).await;
        check_alarm_delivery(seed, &fixtures, &order, &reference, &shuffled, &replay);
        reordered_alarms += usize::from(shuffled.pages != reference.pages);
    }
    // The shuffles do exercise out-of-order arrival (otherwise the test proves little).
    assert!(reordered_alarms > SEEDS as usize / 2, "{reordered_alarms}");
}

/// Alarm changes redelivered late (past the 60-second lease after which a notification decided
/// but not confirmed would be sent again) still change nothing: no page, not a word of a record.
#[tokio::test]
async fn alarm_events_late_redeliveries_change_nothing() {
    let fixtures = alarm_fixtures();
    let all: Vec<usize> = (0..fixtures.len()).collect();
    let keys = alarm_keys(&fixtures);
    for seed in 0..SEEDS / 4 {
        let world = AlarmWorld::new();
        let monitor = AlarmMonitor::new(
            &world.ledger,
            &world.notifier,
            &world.metrics,
            &world.clock,
            AlarmSettings::default(),
        );
        for &i in &all {
            assert!(monitor.handle(&fixtures[i].fixture.text).await.is_ok());
        }
        let mut records = BTreeMap::new();
        for key in &keys {
            // With the revision this time: not even a rewrite of the same record is allowed.
            records.insert(key.clone(), world.ledger.alarm(key).await.expect("record"));
        }
        let pages = world.notifier.pages();
        for i in thrice_shuffled(fixtures.len(), seed) {
            world.clock.advance(chrono::Duration::minutes(2));
            let answer = monitor.handle(&fixtures[i].fixture.text).await;
            assert!(answer.is_ok(), "seed {seed}: {answer:?}");
        }
        for key in &keys {
            assert_eq!(
                world.ledger.alarm(key).await.expect("record"),
                records[key],
                "seed {seed}: {key}"
            );
        }
        assert_eq!(world.notifier.pages(), pages, "seed {seed}");
    }
}

async fn alarms_on_stack(
    moto: &MotoServer,
    fixtures: &[AlarmFixture],
    order: &[usize],
) -> (AlarmRun, Vec<BTreeMap<String, String>>) {
    let (sdk, stack) = fresh_stack(moto).await;
    let ledger = DynamoDbLedger::new(&sdk, &stack.names.table);
    let monitor = AlarmMonitor::new(
        ledger.clone(),
        SnsNotifier::new(&sdk, &stack.topic_arn),
        CloudWatchMetrics::new(&sdk),
        SystemClock,
        AlarmSettings::default(),
    );
    for &i in order {
        let answer = monitor.handle(&fixtures[i].fixture.text).await;
        assert!(answer.is_ok(), "{}: {answer:?}", fixtures[i].fixture.name);
    }
    // Alarm records are read back through the adapter (and compared as records above); the other
    // items (the catalog of alarms) are compared as items, without their wall-clock TTL.
    let others = stack
        .ledger_items()
        .await
        .expect("ledger items")
        .into_iter()
        .filter(|i| i.get("entity").map(String::as_str) != Some("alarm"))
        .map(|mut i| {
            i.remove("expires_at");
            i
        })
        .collect();
    let run = AlarmRun {
        records: alarm_records(&ledger, &alarm_keys(fixtures)).await,
        pages: sorted(
            stack
                .drain_pages()
                .await
                .expect("pages")
                .iter()
                .map(PageView::received)
                .collect(),
        ),
    };
    (run, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_events_on_local_stack_shuffled_triple_delivery_matches_ordered() {
    let fixtures = alarm_fixtures();
    let moto = MotoServer::start().expect("moto server");
    let all: Vec<usize> = (0..fixtures.len()).collect();
    let (mut reference, reference_items) = alarms_on_stack(&moto, &fixtures, &all).await;
    assert_eq!(reference.pages.len(), 16, "{:#?}", reference.pages);
    // The inbox does not keep the send order: pages are compared as multisets on the stack.
    reference.pages.sort();
    for seed in STACK_SEEDS {
        let order = thrice_shuffled(fixtures.len(), seed);
        let (shuffled, items) = alarms_on_stack(&moto, &fixtures, &order).await;
        let (replay, _) =
            alarms_on_stack(&moto, &fixtures, &applied_changes(&fixtures, &order)).await;
        check_alarm_delivery(seed, &fixtures, &order, &reference, &shuffled, &replay);
        assert!(
            items == reference_items,
            "seed {seed}: catalog items differ\n{}",
            diff_items(&reference_items, &items)
        );
    }
}
