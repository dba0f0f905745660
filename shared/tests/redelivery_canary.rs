//! Issue 7, "Duplicate and reordered delivery", for the canary: every trigger in `events/canary`
//! delivered three times in shuffled order (200 seeds) against the in-memory fakes in paused tokio
//! time, compared with one ordered delivery. A redelivered trigger carries the same run ID (the
//! scheduled event's `id`, the Scheduler input's `run_id`, or the Lambda request ID Lambda keeps on
//! its own retries), so it must neither write a second probe nor count anything twice.
//! (The replication-events and alarm-events counterparts are in tests/tests/redelivery.rs.)
//!
//! Distinct runs are not reordered against their one ordered delivery here: the rule's health is a
//! sequence of probe outcomes by design (consecutive bad probes page), so with a failing run its
//! pages would depend on which runs came first. The runs here are all healthy; what must not
//! depend on the order (or the number) of deliveries is what was probed, recorded and counted.
#![cfg(feature = "fakes")]

use chrono::{DateTime, TimeZone, Utc};
use replmon_shared::canary::probe::ProbeStatus;
use replmon_shared::canary::setup::{ReplicationRule, ReplicationSetup, RuleFilter};
use replmon_shared::canary::{Canary, CanarySettings};
use replmon_shared::clock::Clock;
use replmon_shared::fakes::{
    thrice_shuffled, Arrival, FakeS3, InMemoryLedger, RecordingNotifier, RecordingProbeMetrics,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

const SEEDS: u64 = 200;

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[derive(Debug, Clone)]
struct Fixture {
    name: String,
    text: String,
}

/// Every trigger under `events/canary` (bad one included), by name.
fn canary_fixtures() -> Vec<Fixture> {
    fn walk(dir: &PathBuf, base: &PathBuf, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("fixture directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                let name = path.strip_prefix(base).expect("under events/canary");
                let text = std::fs::read_to_string(&path).expect("fixture readable");
                out.insert(name.to_string_lossy().into_owned(), text);
            }
        }
    }
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/canary");
    let mut out = BTreeMap::new();
    walk(&base, &base, &mut out);
    out.into_iter()
        .map(|(name, text)| Fixture { name, text })
        .collect()
}

/// Wall time that follows tokio's paused clock, so the canary's records and latencies agree.
struct TokioClock {
    wall: DateTime<Utc>,
    instant: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(self.instant.elapsed()).unwrap_or_default()
    }
}

const SOURCE: &str = "replmon-demo-source";
const REPLICA: &str = "replmon-demo-replica";
const RULE: &str = "replicate-everything";

struct CanaryWorld {
    s3: FakeS3,
    ledger: InMemoryLedger,
    notifier: RecordingNotifier,
    metrics: RecordingProbeMetrics,
    clock: TokioClock,
}

/// A page's meaningful content: subject, attributes and body.
type PageView = (String, Vec<(String, String)>, String);

/// A probe record without its times: run, key, status, latency, HEADs, counted, cleaned.
type ProbeView = (String, String, ProbeStatus, Option<u64>, u32, bool, bool);

/// A rule's health: consecutive bad, incident open, its cause, last status, probes counted,
/// pages owed.
type HealthView = (
    u32,
    bool,
    Option<ProbeStatus>,
    Option<ProbeStatus>,
    usize,
    usize,
);

/// What a canary delivery left. Left out: what depends on when each run happened (the k-th
/// delivery is a different run in another order), i.e. probe put/resolve/deadline times, the
/// health's `last_probe_at`, and probe IDs (built from the put time) in the health's `counted`
/// list, which is compared by its length.
#[derive(Debug, PartialEq)]
struct CanaryState {
    probe_puts: Vec<String>,
    probes: Vec<ProbeView>,
    health: Vec<HealthView>,
    measurements: usize,
    pages: Vec<PageView>,
    keys_left: Vec<String>,
}

impl CanaryWorld {
    fn new() -> Self {
        let world = CanaryWorld {
            s3: FakeS3::default(),
            ledger: InMemoryLedger::default(),
            notifier: RecordingNotifier::default(),
            metrics: RecordingProbeMetrics::default(),
            clock: TokioClock {
                wall: Utc
                    .with_ymd_and_hms(2026, 11, 23, 3, 0, 0)
                    .single()
                    .expect("valid time"),
                instant: tokio::time::Instant::now(),
            },
        };
        world.s3.add_bucket(
            SOURCE,
            Some(ReplicationSetup {
                role: "arn:aws:iam::123456789012:role/replmon-demo-replication".into(),
                rules: vec![ReplicationRule {
                    id: RULE.into(),
                    priority: Some(1),
                    enabled: true,
                    filter: RuleFilter::default(),
                    destination_bucket: REPLICA.into(),
                    destination_account: None,
                    metrics_enabled: true,
                    rtc_enabled: true,
                    replicates_kms_objects: true,
                }],
            }),
        );
        world.s3.add_bucket(REPLICA, None);
        world
            .s3
            .set_arrival(REPLICA, Arrival::After(Duration::from_secs(3)));
        world
    }

    /// Deliver the triggers in `order`, five minutes apart (the schedule's rate); answer each
    /// delivery's outcome: an error, or whether the run was a repeat and how many probes it wrote.
    async fn deliver(&self, fixtures: &[Fixture], order: &[usize]) -> Vec<String> {
        let canary = Canary::new(
            &self.s3,
            &self.ledger,
            &self.notifier,
            &self.metrics,
            &self.clock,
            vec![SOURCE.to_owned()],
            CanarySettings::default(),
        );
        let mut outcomes = Vec::new();
        for &i in order {
            tokio::time::sleep(Duration::from_secs(300)).await;
            // Without a run ID the run is named by the Lambda request ID, which Lambda keeps on
            // its own retries of the invocation: the same for every delivery of one fixture.
            let request_id = format!("request-{}", fixtures[i].name);
            outcomes.push(match canary.handle(&fixtures[i].text, &request_id).await {
                Err(_) => "error".to_owned(),
                Ok(report) => report
                    .buckets
                    .iter()
                    .map(|b| {
                        format!(
                            "{}: repeated run {}, new probes {}, problems {:?}, errors {:?}",
                            b.bucket,
                            b.repeated_run,
                            b.probes.iter().filter(|p| !p.carried_over).count(),
                            b.problems,
                            b.errors
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        outcomes
    }

    fn state(&self) -> CanaryState {
        let health = [(REPLICA, RULE), ("*", "*")]
            .into_iter()
            .map(|(destination, rule)| {
                let h = self
                    .ledger
                    .rule_health(SOURCE, destination, rule)
                    .unwrap_or_else(|| panic!("no health record for {destination} / {rule}"));
                (
                    h.consecutive_bad,
                    h.incident_opened_at.is_some(),
                    h.incident_cause,
                    h.last_status,
                    h.counted.len(),
                    h.owed.len(),
                )
            })
            .collect();
        CanaryState {
            probe_puts: sorted(self.s3.puts().into_iter().map(|p| p.key).collect()),
            probes: {
                let mut probes: Vec<ProbeView> = self
                    .ledger
                    .probes()
                    .into_iter()
                    .map(|p| {
                        (
                            p.run_id,
                            p.key,
                            p.status,
                            p.latency_ms,
                            p.head_requests,
                            p.counted,
                            p.cleaned,
                        )
                    })
                    .collect();
                // By run and key (the status has no order of its own).
                probes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                probes
            },
            health,
            measurements: self.metrics.count(),
            pages: sorted(
                self.notifier
                    .pages()
                    .iter()
                    .map(|p| (p.subject().to_owned(), p.attributes(), p.body().to_owned()))
                    .collect(),
            ),
            keys_left: [SOURCE, REPLICA]
                .into_iter()
                .flat_map(|b| self.s3.keys(b))
                .collect(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn canary_redelivered_triggers_neither_probe_nor_count_twice() {
    let fixtures = canary_fixtures();
    assert_eq!(fixtures.len(), 7, "{fixtures:?}");
    let all: Vec<usize> = (0..fixtures.len()).collect();
    let reference = CanaryWorld::new();
    let reference_outcomes = reference.deliver(&fixtures, &all).await;
    let expected = reference.state();
    // One probe per run (six runs; the bad trigger is refused), each arrived, counted, cleaned.
    assert_eq!(
        reference_outcomes.iter().filter(|o| *o == "error").count(),
        1,
        "{reference_outcomes:#?}"
    );
    assert_eq!(expected.probe_puts.len(), 6, "{expected:#?}");
    assert!(
        expected
            .probes
            .iter()
            .all(|p| p.2 == ProbeStatus::Arrived && p.5 && p.6),
        "{expected:#?}"
    );
    assert_eq!(expected.health[0].4, 6, "six probes counted");
    assert_eq!(expected.health[1].4, 6, "six configuration reads counted");
    assert_eq!(expected.measurements, 6, "one per probe: {expected:#?}");
    assert!(expected.keys_left.is_empty(), "{:?}", expected.keys_left);

    for seed in 0..SEEDS {
        let order = thrice_shuffled(fixtures.len(), seed);
        let world = CanaryWorld::new();
        let outcomes = world.deliver(&fixtures, &order).await;
        let mut delivered = BTreeSet::new();
        for (&i, outcome) in order.iter().zip(&outcomes) {
            if delivered.insert(i) || reference_outcomes[i] == "error" {
                assert_eq!(
                    outcome, &reference_outcomes[i],
                    "seed {seed}: first delivery of {} (or a bad one again)",
                    fixtures[i].name
                );
            } else {
                assert_eq!(
                    outcome,
                    &format!("{SOURCE}: repeated run true, new probes 0, problems [], errors []"),
                    "seed {seed}: redelivery of {} must not probe again",
                    fixtures[i].name
                );
            }
        }
        assert_eq!(world.state(), expected, "seed {seed}");
    }
}
