//! Text an attacker chooses (object keys, rule IDs, bucket names, failure reasons, alarm names)
//! against the pages and the ledger keys. Properties, over generated hostile strings:
//!
//! - a replication event either is refused at parse time with an error naming the field (its
//!   message goes back for retry, nothing is recorded), or it is recorded and its page carries
//!   no hidden character and no line the template did not write (a key holding "\nFix: ..."
//!   shows escaped, on its own line of the sample list);
//! - an alarm change's page likewise;
//! - two events that pass the checks share an incident's ledger key only when they name the
//!   same source, destination, cause and rule, and an object's only when they name the same
//!   source, destination, key and version.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use replmon_shared::alarm::monitor::{AlarmMonitor, AlarmSettings};
use replmon_shared::delivery::text::{is_hidden, untrusted};
use replmon_shared::event::{NotificationRecord, ReplicationEventKind, S3Notification};
use replmon_shared::fakes::{
    FixedMetrics, InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier,
};
use replmon_shared::incident::IncidentKey;
use replmon_shared::ledger::object_sort_key;
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{error}");
    }
}

/// Characters that forge or hide text, the ledger's separator, and ordinary ones.
const HOSTILE: &[&str] = &[
    "\n",
    "\r",
    "\t",
    "\u{1b}[31m",
    "\u{7}",
    "\u{85}",
    "\u{202e}",
    "\u{2066}",
    "\u{200b}",
    "\u{2028}",
    "\u{feff}",
    "#",
    ":",
    "/",
    " ",
    "Fix: run this",
    "Reason: ",
    "Rule: ",
    "a",
    "Z",
    "9",
    "-",
    ".",
    "_",
    "é",
    "%",
    "+",
];

fn hostile(max_pieces: usize) -> BoxedStrategy<String> {
    prop::collection::vec(prop::sample::select(HOSTILE), 0..=max_pieces)
        .prop_map(|pieces| pieces.concat())
        .boxed()
}

/// Lines of a page that begin with one of the template's labels.
fn labelled_lines(body: &str) -> Vec<&str> {
    const LABELS: &[&str] = &[
        "Fix:",
        "Reason:",
        "Rule:",
        "Source bucket:",
        "Destination:",
        "Meaning:",
        "Likely cause:",
        "Severity:",
        "Incident:",
    ];
    body.lines()
        .filter(|line| LABELS.iter().any(|label| line.starts_with(label)))
        .collect()
}

fn no_hidden_characters(body: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !body.chars().any(|c| c != '\n' && is_hidden(c)),
        "hidden character in {body:?}"
    );
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

#[test]
fn hostile_replication_fields_are_refused_or_paged_escaped() {
    let fields = (hostile(6), hostile(4), hostile(3), hostile(3), hostile(2));
    let benign_labels = {
        let (body, _) = replication_page("src-bucket", "dst-bucket", "rule-1", "Dst", "k")
            .expect("a benign event pages");
        labelled_lines(&body).len()
    };
    run(fields, |(key, rule, source, destination, reason)| {
        let source = format!("src{source}");
        let destination = format!("dst{destination}");
        let reason = format!("Dst{reason}");
        match replication_page(&source, &destination, &rule, &reason, &key) {
            Err(error) => {
                // Refused: the error names the field, nothing was recorded.
                prop_assert!(error.contains('`'), "{error}");
            }
            Ok((body, subject)) => {
                no_hidden_characters(&body)?;
                prop_assert!(subject.chars().all(|c| (' '..='~').contains(&c)));
                prop_assert_eq!(labelled_lines(&body).len(), benign_labels, "{}", body);
                // The object is shown, escaped, never dropped.
                if key.chars().count() <= 200 {
                    let shown = format!("  - {} (version v1)", untrusted(&key));
                    prop_assert!(body.lines().any(|l| l == shown), "{shown:?} in {body}");
                }
            }
        }
        Ok(())
    });
}

/// One failure event through the monitor: the page's body and subject, or the error that
/// refused the message (when nothing was recorded).
fn replication_page(
    source: &str,
    destination: &str,
    rule: &str,
    reason: &str,
    key: &str,
) -> Result<(String, String), String> {
    let ledger = InMemoryLedger::default();
    let notifier = RecordingNotifier::default();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap());
    let monitor = ReplicationMonitor::new(&ledger, &notifier, &clock, MonitorSettings::default());
    let builder = NotificationBuilder::new(source, destination, rule);
    let body = NotificationBuilder::notification(vec![builder.record(
        ReplicationEventKind::OperationFailedReplication,
        key,
        "v1",
        Some(reason),
    )]);
    let event = NotificationBuilder::sqs_event(std::slice::from_ref(&body));
    let response: Value = runtime()
        .block_on(monitor.handle_value(&event))
        .map_err(|e| e.to_string())?;
    let failed = response["batchItemFailures"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if failed {
        assert!(ledger.objects().is_empty() && ledger.incidents().is_empty());
        // The response names only the message; the reason is what parsing the body says.
        return Err(match S3Notification::from_json(&body) {
            Err(error) => error.to_string(),
            Ok(_) => "refused without an error".into(),
        });
    }
    let pages = notifier.pages();
    assert_eq!(pages.len(), 1, "one page");
    Ok((pages[0].body().to_owned(), pages[0].subject().to_owned()))
}

#[test]
fn hostile_alarm_names_and_reasons_are_paged_escaped() {
    let template: Value =
        serde_json::from_str(include_str!("../../events/alarm/metric-alarm.json"))
            .expect("fixture");
    run((hostile(8), hostile(8)), |(name, reason)| {
        let mut change = template.clone();
        change["detail"]["alarmName"] = Value::String(format!("a{name}"));
        change["detail"]["state"]["reason"] = Value::String(reason.clone());
        let ledger = InMemoryLedger::default();
        let notifier = RecordingNotifier::default();
        let clock = ManualClock::new(Utc::now());
        let metrics = FixedMetrics::default();
        let monitor = AlarmMonitor::new(
            &ledger,
            &notifier,
            &metrics,
            &clock,
            AlarmSettings::default(),
        );
        let outcome = runtime().block_on(monitor.handle(&change.to_string()));
        prop_assert!(outcome.is_ok(), "{outcome:?}");
        for page in notifier.pages() {
            no_hidden_characters(page.body())?;
            let forged = page
                .body()
                .lines()
                .filter(|l| l.starts_with("Fix:") || l.starts_with("Reason:"))
                .count();
            prop_assert_eq!(forged, 1, "{}", page.body());
        }
        Ok(())
    });
}

#[test]
fn ledger_keys_of_different_events_never_collide() {
    // An event's key parts joined by the separator, then split again at other separators: the
    // events most likely to collide if a key were ambiguous (a `#` moved from the destination
    // into the key, from the key into the version, from the reason into the rule).
    let piece = || {
        prop::collection::vec(
            prop::sample::select(&["a", "#", "b#", "#a", "sha256:", "FAILED:", "R", "v"][..]),
            0..=4,
        )
        .prop_map(|p| p.concat())
    };
    let inputs = (
        (piece(), piece(), piece()),
        (piece(), piece(), piece()),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    );
    run(inputs, |((dst, key, version), (reason, rule, _), i, j)| {
        let one = Parts {
            destination: format!("d{dst}a"),
            reason: format!("R{reason}"),
            rule,
            key,
            version: format!("v{version}"),
        };
        let object_joined = format!("{}#{}#{}", one.destination, one.key, one.version);
        let incident_joined = format!("{}#{}#{}", one.destination, one.reason, one.rule);
        let cuts = |text: &str| -> Vec<usize> { text.match_indices('#').map(|(p, _)| p).collect() };
        let resplit = |text: &str| -> Option<(String, String, String)> {
            let cuts = cuts(text);
            if cuts.len() < 2 {
                return None;
            }
            let a = cuts[i.index(cuts.len())];
            let b = cuts[j.index(cuts.len())];
            let (a, b) = (a.min(b), a.max(b));
            (a != b).then(|| {
                (
                    text[..a].to_owned(),
                    text[a + 1..b].to_owned(),
                    text[b + 1..].to_owned(),
                )
            })
        };
        let mut others = Vec::new();
        if let Some((destination, key, version)) = resplit(&object_joined) {
            others.push(Parts {
                destination,
                key,
                version,
                ..one.clone()
            });
        }
        if let Some((destination, reason, rule)) = resplit(&incident_joined) {
            others.push(Parts {
                destination,
                reason,
                rule,
                ..one.clone()
            });
        }
        let Some(ka) = one.keys() else {
            return Ok(()); // refused at parse time: never reaches a key
        };
        for two in others {
            let Some(kb) = two.keys() else { continue };
            let same_incident = (&one.destination, &one.reason, &one.rule)
                == (&two.destination, &two.reason, &two.rule);
            prop_assert_eq!(ka.0 == kb.0, same_incident, "{:?} {:?}", one, two);
            let same_object = (&one.destination, &one.key, &one.version)
                == (&two.destination, &two.key, &two.version);
            prop_assert_eq!(ka.1 == kb.1, same_object, "{:?} {:?}", one, two);
        }
        Ok(())
    });
}

/// The parts of an event that name its ledger items (the source is fixed).
#[derive(Debug, Clone)]
struct Parts {
    destination: String,
    reason: String,
    rule: String,
    key: String,
    version: String,
}

impl Parts {
    /// The incident's and the object's ledger keys, from the parsed event; `None` if refused.
    fn keys(&self) -> Option<(String, String)> {
        let builder = NotificationBuilder::new("src", &self.destination, &self.rule);
        let body = NotificationBuilder::notification(vec![builder.record(
            ReplicationEventKind::OperationFailedReplication,
            &self.key,
            &self.version,
            Some(&self.reason),
        )]);
        let Ok(S3Notification::Records(records)) = S3Notification::from_json(&body) else {
            return None;
        };
        let NotificationRecord::Replication(event) = records.into_iter().next()? else {
            return None;
        };
        let incident = IncidentKey::for_event(&event);
        Some((
            incident.id(),
            object_sort_key(
                &event.destination_bucket,
                &event.key,
                event.version_id.as_deref(),
            ),
        ))
    }
}
