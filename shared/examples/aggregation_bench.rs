//! Benchmark: parse and aggregate 100,000 replication failure records into incidents with the
//! in-memory ports, on one core (a current-thread runtime).
//!
//!     cargo run --release -p replmon-shared --no-default-features --features fakes --example aggregation_bench
//!
//! Prints records per second (goal: at least 200,000/s) and checks that exactly one page per
//! incident key went out. Records arrive as SQS batches of 10 messages, each message one S3
//! notification, as the JSON text Lambda delivers: the timing includes all parsing.

use replmon_shared::event::ReplicationEventKind::OperationFailedReplication;
use replmon_shared::fakes::{InMemoryLedger, ManualClock, NotificationBuilder, RecordingNotifier};
use replmon_shared::replication::{MonitorSettings, ReplicationMonitor};
use std::time::Instant;

const RECORDS: usize = 100_000;
const BATCH: usize = 10;
const RULES: usize = 5;
const REASONS: [&str; 4] = [
    "DstPutObjectNotPermitted",
    "DstKmsKeyNotFound",
    "AssumeRoleNotPermitted",
    "SrcGetObjectNotPermitted",
];
const DESTINATIONS: [&str; 2] = ["replica-eu-west-1", "replica-us-west-2"];

fn main() {
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
    let payloads: Vec<String> = (0..RECORDS / BATCH)
        .map(|batch| {
            let bodies: Vec<String> = (0..BATCH)
                .map(|i| {
                    let n = batch * BATCH + i;
                    let builder = &builders[n % builders.len()];
                    let reason = REASONS[(n / builders.len()) % REASONS.len()];
                    NotificationBuilder::notification(vec![builder.record(
                        OperationFailedReplication,
                        &format!("data/2026/11/{n:07} part.parquet"),
                        &format!("3HL4kqtJvjVBH40Nrjfkd{n:011}"),
                        Some(reason),
                    )])
                })
                .collect();
            NotificationBuilder::sqs_event(&bodies).to_string()
        })
        .collect();
    let bytes: usize = payloads.iter().map(String::len).sum();

    let ledger = InMemoryLedger::default();
    let notifier = RecordingNotifier::default();
    let clock = ManualClock::new(chrono::Utc::now());
    let monitor = ReplicationMonitor::new(&ledger, &notifier, &clock, MonitorSettings::default());

    // Where the time goes: parsing alone, for the record.
    let parse_started = Instant::now();
    let mut parsed_events = 0usize;
    for payload in &payloads {
        if let Ok((_, messages)) = replmon_shared::envelope::open(payload) {
            parsed_events += messages.iter().filter(|m| m.notification.is_ok()).count();
        }
    }
    let parse_elapsed = parse_started.elapsed();

    let started = Instant::now();
    let mut failed = 0usize;
    runtime.block_on(async {
        for payload in &payloads {
            match monitor.handle(payload).await {
                Ok(response) => {
                    failed += response["batchItemFailures"].as_array().map_or(0, Vec::len)
                }
                Err(_) => failed += BATCH,
            }
        }
    });
    let elapsed = started.elapsed();
    let rate = RECORDS as f64 / elapsed.as_secs_f64();
    let pages = notifier.pages().len();
    let objects = ledger.objects().len();
    println!(
        "records:            {RECORDS} ({:.1} MB of SQS event JSON)",
        bytes as f64 / 1e6
    );
    println!(
        "elapsed:            {:.3} s (parsing alone: {:.3} s for {parsed_events} messages)",
        elapsed.as_secs_f64(),
        parse_elapsed.as_secs_f64()
    );
    println!("records per second: {rate:.0} (goal >= 200000)");
    println!("incident keys:      {incident_keys}");
    println!("pages produced:     {pages}");
    println!("objects recorded:   {objects}");
    println!("failed messages:    {failed}");
    let ok = pages == incident_keys && objects == RECORDS && failed == 0;
    println!(
        "result:             {}",
        if ok && rate >= 200_000.0 {
            "PASS"
        } else if ok {
            "CORRECT BUT BELOW GOAL"
        } else {
            "WRONG"
        }
    );
    if !ok {
        std::process::exit(1);
    }
}
