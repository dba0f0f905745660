//! Benchmark: parse and aggregate 100,000 replication failure records into incidents with the
//! in-memory ports, on one core (a current-thread runtime).
//!
//!     cargo run --release -p replmon-shared --no-default-features --features fakes,allocator --example aggregation_bench
//!
//! Two shapes of the same 100,000 records, each timed from the JSON text Lambda delivers to the
//! response: S3 notification documents of 10 records, and SQS batches of 10 messages whose bodies
//! are S3 notifications (escaped JSON inside JSON: about twice the parsing). Each shape gets a
//! warm-up run, then RUNS timed runs on a fresh ledger; the median is the figure. Checks that
//! exactly one page per incident key went out and that every object was recorded.

use replmon_shared::event::ReplicationEventKind::OperationFailedReplication;
use replmon_shared::fakes::{InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier};
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use std::time::Instant;

/// The allocator the functions use, configured as they configure it.
#[global_allocator]
static ALLOCATOR: replmon_shared::allocator::Allocator = replmon_shared::allocator::Allocator;

const RECORDS: usize = 100_000;
const BATCH: usize = 10;
const RUNS: usize = 7;
const GOAL: f64 = 200_000.0;
const RULES: usize = 5;
const REASONS: [&str; 4] = [
    "DstPutObjectNotPermitted",
    "DstKmsKeyNotFound",
    "AssumeRoleNotPermitted",
    "SrcGetObjectNotPermitted",
];
const DESTINATIONS: [&str; 2] = ["replica-eu-west-1", "replica-us-west-2"];

struct Outcome {
    median: f64,
    best: f64,
    worst: f64,
    correct: bool,
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    label: &str,
    payloads: &[String],
    incident_keys: usize,
) -> Outcome {
    let bytes: usize = payloads.iter().map(String::len).sum();
    println!(
        "{label}: {} payloads, {:.1} MB of JSON",
        payloads.len(),
        bytes as f64 / 1e6
    );
    let mut rates = Vec::new();
    let mut correct = true;
    for run in 0..=RUNS {
        let ledger = InMemoryLedger::default();
        let notifier = RecordingNotifier::default();
        let clock = ManualClock::new(chrono::Utc::now());
        let monitor =
            ReplicationMonitor::new(&ledger, &notifier, &clock, MonitorSettings::default());
        let mut failed = 0usize;
        let started = Instant::now();
        runtime.block_on(async {
            for payload in payloads {
                match monitor.handle(payload).await {
                    Ok(response) => {
                        failed += response["batchItemFailures"].as_array().map_or(0, Vec::len)
                    }
                    Err(_) => failed += BATCH,
                }
            }
        });
        let elapsed = started.elapsed();
        let pages = notifier.pages().len();
        let objects = ledger.objects().len();
        correct &= pages == incident_keys && objects == RECORDS && failed == 0;
        if run == 0 {
            continue;
        }
        let rate = RECORDS as f64 / elapsed.as_secs_f64();
        println!(
            "  run {run}: {:.3} s, {rate:>7.0} records/s, {pages} pages for {incident_keys} incident keys, {objects} objects, {failed} failed",
            elapsed.as_secs_f64()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let outcome = Outcome {
        median: rates[rates.len() / 2],
        best: rates[rates.len() - 1],
        worst: rates[0],
        correct,
    };
    println!(
        "  records per second: {:.0} median of {RUNS} (best {:.0}, worst {:.0}; goal >= {GOAL:.0}){}",
        outcome.median,
        outcome.best,
        outcome.worst,
        if correct { "" } else { "  WRONG RESULTS" }
    );
    outcome
}

fn main() {
    replmon_shared::allocator::retain_freed_memory();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            std::process::exit(1);
        }
    };
    let builders: Vec<NotificationBuilder> = (0..RULES)
        .flat_map(|r| {
            DESTINATIONS
                .iter()
                .map(move |d| NotificationBuilder::new("prod-data", d, &format!("rule-{r}")))
        })
        .collect();
    let incident_keys = builders.len() * REASONS.len();
    let record = |n: usize| {
        let builder = &builders[n % builders.len()];
        let reason = REASONS[(n / builders.len()) % REASONS.len()];
        builder.record(
            OperationFailedReplication,
            &format!("data/2026/11/{n:07} part.parquet"),
            &format!("3HL4kqtJvjVBH40Nrjfkd{n:011}"),
            Some(reason),
        )
    };
    let notifications: Vec<String> = (0..RECORDS / BATCH)
        .map(|batch| {
            NotificationBuilder::notification(
                (0..BATCH).map(|i| record(batch * BATCH + i)).collect(),
            )
        })
        .collect();
    let sqs_batches: Vec<String> = (0..RECORDS / BATCH)
        .map(|batch| {
            let bodies: Vec<String> = (0..BATCH)
                .map(|i| NotificationBuilder::notification(vec![record(batch * BATCH + i)]))
                .collect();
            NotificationBuilder::sqs_event(&bodies).to_string()
        })
        .collect();

    println!(
        "{RECORDS} replication failure records over {incident_keys} incident keys, one core\n"
    );
    let direct = measure(
        &runtime,
        "S3 notifications of 10 records",
        &notifications,
        incident_keys,
    );
    println!();
    let sqs = measure(
        &runtime,
        "SQS batches of 10 S3 notifications",
        &sqs_batches,
        incident_keys,
    );
    println!();
    for (label, outcome) in [("S3 notifications", &direct), ("SQS batches", &sqs)] {
        let verdict = match (outcome.correct, outcome.median >= GOAL) {
            (false, _) => "WRONG",
            (true, true) => "meets the goal",
            (true, false) => "correct, below the goal",
        };
        println!(
            "{label:<17} {:>7.0} records/s (median): {verdict}",
            outcome.median
        );
    }
    envelope_costs();
    if !direct.correct || !sqs.correct {
        std::process::exit(1);
    }
}

/// The SQS envelope alone, two ways, on SQS events as Lambda delivers them (every field of the
/// record, `events/sqs/storm-batch.json`): `envelope::open`, which reads a borrowed wire of the
/// fields it uses, and `aws_lambda_events`' `SqsEvent`, which owns every field (what the envelope
/// read before): the measured reason the envelope does not use that type.
fn envelope_costs() {
    use aws_lambda_events::event::sqs::SqsEvent;
    const EVENT: &str = include_str!("../../events/sqs/storm-batch.json");
    let per_event = serde_json::from_str::<serde_json::Value>(EVENT)
        .ok()
        .and_then(|v| v["Records"].as_array().map(Vec::len))
        .unwrap_or(1);
    let batches = vec![EVENT.to_owned(); 10_000];
    let records = (batches.len() * per_event) as f64;
    let median = |mut runs: Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let (mut ours, mut library, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..7 {
        let started = Instant::now();
        for batch in &batches {
            if let Ok((_, envelopes)) = replmon_shared::envelope::open(batch) {
                bytes += envelopes
                    .iter()
                    .map(|e| e.body.as_ref().map_or(0, String::len))
                    .sum::<usize>();
            }
        }
        ours.push(started.elapsed().as_secs_f64() * 1e6 / records);
        let started = Instant::now();
        for batch in &batches {
            if let Ok(event) = serde_json::from_str::<SqsEvent>(batch) {
                bytes += event
                    .records
                    .iter()
                    .map(|r| r.body.as_ref().map_or(0, String::len))
                    .sum::<usize>();
            }
        }
        library.push(started.elapsed().as_secs_f64() * 1e6 / records);
    }
    println!(
        "\nSQS envelope only, {per_event}-record events as Lambda sends them (median of 7, {bytes} bytes read): \
         envelope::open (a borrowed wire of the fields used) {:.2} us/record, aws_lambda_events SqsEvent {:.2} us/record",
        median(ours),
        median(library)
    );
}
