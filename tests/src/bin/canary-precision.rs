//! `canary-precision`: how well the canary measures replication latency, against the local stack
//! with the replication simulator (a benchmark, not a test: it reports figures).
//!
//! One source bucket with ten rules, each to its own destination. The simulator copies each probe
//! after a delay drawn uniformly between 0.2 s and 20 s. Five canary runs give 50 probes. For each
//! probe the true latency is when the simulator's copy became visible (right after its PUT to
//! the destination returned) minus the canary's PUT acknowledgement; the measurement error is the
//! canary's estimate (the midpoint of its bounds) minus that. The goals: error within
//! max(250 ms, 10 %) of the latency, and at most 20 HEAD requests per probe.
//!
//!     cargo run -p replmon-tests --bin canary-precision [-- --probes-per-run 10 --runs 5 --seed 7]

use anyhow::{bail, Context, Result};
use replmon_shared::aws::{DynamoDbLedger, S3ObjectStore, SnsNotifier};
use replmon_shared::canary::probe::ProbeStatus;
use replmon_shared::canary::{Canary, CanarySettings, Trigger};
use replmon_shared::clock::SystemClock;
use replmon_shared::fakes::RecordingProbeMetrics;
use replmon_tests::replication_sim::{Delay, ReplicationSimulator, SimulatorSettings};
use replmon_tests::{
    numeric_option, replication_rule, sdk_config, versioned_bucket, MotoServer, Stack, StackNames,
};
use std::collections::HashMap;
use std::time::Duration;

struct Row {
    rule: String,
    true_ms: i64,
    estimate_ms: i64,
    lower_ms: i64,
    upper_ms: i64,
    heads: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rules = numeric_option(&args, "--probes-per-run", 10)? as usize;
    let runs = numeric_option(&args, "--runs", 5)?;
    let seed = numeric_option(&args, "--seed", 7)?;

    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;
    let source = stack.names.source_bucket.clone();
    let replicas: Vec<String> = (0..rules)
        .map(|i| format!("replmon-bench-replica-{i}"))
        .collect();
    configure_rules(&stack.s3, &source, &replicas).await?;

    // moto answers every rule's filter as Prefix "": give the simulator the real prefixes, so
    // each probe goes to its own rule's destination only.
    let rule_prefixes: HashMap<(String, String), String> = (0..rules)
        .map(|i| {
            (
                (source.clone(), format!("rule-{i}")),
                format!("replmon-canary/rule-{i}/"),
            )
        })
        .collect();
    let sim = ReplicationSimulator::start(
        stack.s3.clone(),
        vec![source.clone()],
        SimulatorSettings {
            delay: Delay::Uniform {
                min: Duration::from_millis(200),
                max: Duration::from_secs(20),
            },
            seed,
            rule_prefixes,
            ..Default::default()
        },
    )
    .await;
    let metrics = RecordingProbeMetrics::default();
    let canary = Canary::new(
        S3ObjectStore::new(&sdk),
        DynamoDbLedger::new(&sdk, &stack.names.table),
        SnsNotifier::new(&sdk, &stack.topic_arn),
        &metrics,
        SystemClock,
        vec![source.clone()],
        CanarySettings {
            budget: Duration::from_secs(40),
            ..CanarySettings::default()
        },
    );

    let mut rows = Vec::new();
    for run in 0..runs {
        let run_id = format!("bench-{run}");
        let report = canary
            .run(&Trigger {
                run_id: run_id.clone(),
                buckets: None,
            })
            .await;
        let bucket = &report.buckets[0];
        if !bucket.errors.is_empty() || !bucket.problems.is_empty() {
            bail!("run {run_id}: {bucket:#?}");
        }
        let copies = sim.replicated();
        let records = stack.partition(&format!("PROBE#{source}")).await?;
        for probe in &bucket.probes {
            if probe.status != ProbeStatus::Arrived {
                bail!("probe {} ended {:?}", probe.key, probe.status);
            }
            let copy = copies
                .iter()
                .find(|c| c.key == probe.key && c.destination_bucket == probe.destination_bucket)
                .with_context(|| format!("no copy of {}", probe.key))?;
            let record = records
                .iter()
                .find(|r| r.get("key") == Some(&probe.key))
                .with_context(|| format!("no record of {}", probe.key))?;
            let put_at: chrono::DateTime<chrono::Utc> = record["put_at"].parse()?;
            let number = |name: &str| -> Result<i64> {
                record
                    .get(name)
                    .with_context(|| format!("no {name}"))?
                    .parse()
                    .with_context(|| format!("{name} is not a number"))
            };
            rows.push(Row {
                rule: probe.rule_id.clone(),
                true_ms: (copy.visible_at - put_at).num_milliseconds(),
                estimate_ms: number("latency_ms")?,
                lower_ms: number("latency_min_ms")?,
                upper_ms: number("latency_max_ms")?,
                heads: probe.head_requests,
            });
        }
        eprintln!("run {run_id}: {} probes measured", bucket.probes.len());
    }
    sim.stop().await;
    print_report(&rows);
    Ok(())
}

fn print_report(rows: &[Row]) {
    println!("| # | rule | true latency (ms) | estimate (ms) | bounds (ms) | error (ms) | allowed (ms) | HEADs |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut within = 0;
    let mut worst_ratio: f64 = 0.0;
    let mut errors: Vec<i64> = Vec::new();
    let mut bounded = 0;
    for (i, row) in rows.iter().enumerate() {
        let error = row.estimate_ms - row.true_ms;
        let allowed = (row.true_ms / 10).max(250);
        if error.abs() <= allowed {
            within += 1;
        }
        if row.lower_ms <= row.true_ms && row.true_ms <= row.upper_ms {
            bounded += 1;
        }
        worst_ratio = worst_ratio.max(error.abs() as f64 / allowed as f64);
        errors.push(error.abs());
        println!(
            "| {} | {} | {} | {} | {}..{} | {:+} | {} | {} |",
            i + 1,
            row.rule,
            row.true_ms,
            row.estimate_ms,
            row.lower_ms,
            row.upper_ms,
            error,
            allowed,
            row.heads
        );
    }
    errors.sort_unstable();
    let heads: Vec<u32> = rows.iter().map(|r| r.heads).collect();
    let max_heads = heads.iter().copied().max().unwrap_or(0);
    let mean_heads = heads.iter().sum::<u32>() as f64 / heads.len().max(1) as f64;
    let median = errors.get(errors.len() / 2).copied().unwrap_or(0);
    let p90 = errors.get(errors.len() * 9 / 10).copied().unwrap_or(0);
    println!();
    println!("probes: {}", rows.len());
    println!(
        "error within max(250 ms, 10%): {within}/{} (worst at {:.0}% of its allowance)",
        rows.len(),
        worst_ratio * 100.0
    );
    println!(
        "true latency inside the reported bounds: {bounded}/{}",
        rows.len()
    );
    println!(
        "absolute error: median {median} ms, p90 {p90} ms, max {} ms",
        errors.last().copied().unwrap_or(0)
    );
    println!("HEAD requests per probe: mean {mean_heads:.1}, max {max_heads} (goal <= 20)");
}

async fn configure_rules(s3: &aws_sdk_s3::Client, source: &str, replicas: &[String]) -> Result<()> {
    use aws_sdk_s3::types::{DeleteMarkerReplicationStatus, ReplicationConfiguration};
    let mut config = ReplicationConfiguration::builder()
        .role("arn:aws:iam::123456789012:role/replmon-bench-replication");
    for (i, replica) in replicas.iter().enumerate() {
        versioned_bucket(s3, replica).await?;
        config = config.rules(replication_rule(
            &format!("rule-{i}"),
            i as i32 + 1,
            &format!("replmon-canary/rule-{i}/"),
            replica,
            DeleteMarkerReplicationStatus::Disabled,
        )?);
    }
    s3.put_bucket_replication()
        .bucket(source)
        .replication_configuration(config.build()?)
        .send()
        .await
        .context("configuring replication")?;
    Ok(())
}
