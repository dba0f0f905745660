//! `report-bench`: what `replmon report` costs as history grows (a benchmark, not a test: it
//! reports figures). The canary's daily roll-ups of `--rules` rules probed every
//! `--interval-minutes` for `--days` days are written to the local stack's ledger (moto); the
//! report of the last month and of the whole range is then timed, with the items and bytes it
//! read, beside what a report over every probe record would have to read.
//!
//!     cargo run --release -p replmon-tests --bin report-bench [-- --days 365 --rules 3 --interval-minutes 5]

use anyhow::Result;
use chrono::{Duration, Utc};
use replmon_shared::aws::DynamoDbLedger;
use replmon_shared::canary::ports::CanaryStore;
use replmon_shared::canary::probe::{ProbeRecord, ProbeStatus};
use replmon_shared::canary::rollup::DailyRollup;
use replmon_shared::fakes::{resolved_probe, SplitMix64};
use replmon_shared::report::{report, Period, ReportOptions, ReportReader};
use replmon_tests::{numeric_option, sdk_config, MotoServer, Stack, StackNames};
use std::time::Instant;

fn probe(
    source: &str,
    rule: &str,
    put_at: chrono::DateTime<Utc>,
    rng: &mut SplitMix64,
) -> ProbeRecord {
    let roll = rng.next_u64() % 1000;
    let u = (rng.next_u64() % 10_000) as f64 / 10_000.0;
    let (status, latency) = match roll {
        0..=2 => (ProbeStatus::Missing, None),
        3..=9 => (ProbeStatus::Slow, Some(900_000 + (u * 600_000.0) as u64)),
        _ => (
            ProbeStatus::Arrived,
            Some(1_000 + (u * u * 60_000.0) as u64),
        ),
    };
    let resolved_at = put_at + Duration::milliseconds(latency.unwrap_or(900_000) as i64);
    resolved_probe(
        source,
        &format!("{rule}-replica"),
        rule,
        put_at,
        status,
        latency,
        resolved_at,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let days = numeric_option(&args, "--days", 365)? as i64;
    let rules = numeric_option(&args, "--rules", 3)?;
    let interval = numeric_option(&args, "--interval-minutes", 5)?.max(1) as i64;

    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;
    let ledger = DynamoDbLedger::new(&sdk, &stack.names.table);
    let source = stack.names.source_bucket.clone();
    let today = Utc::now().date_naive();
    let first = today - Duration::days(days);
    let mut rng = SplitMix64(16);
    let started = Instant::now();
    let (mut items, mut bytes, mut probes) = (0u64, 0u64, 0u64);
    for rule in (0..rules).map(|i| format!("rule-{i}")) {
        for day in first.iter_days().take_while(|d| *d < today) {
            let mut rollup = DailyRollup::new(&source, &format!("{rule}-replica"), &rule, day);
            let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
            let mut at = midnight;
            while at < midnight + Duration::days(1) {
                rollup.add(&probe(&source, &rule, at, &mut rng));
                at += Duration::minutes(interval);
                probes += 1;
            }
            rollup.threshold_ms = 900_000;
            rollup.bad_probes_to_page = 2;
            bytes += serde_json::to_vec(&rollup)?.len() as u64;
            items += 1;
            ledger
                .put_daily_rollup(&rollup, None, Utc::now() + Duration::days(400))
                .await?;
        }
    }
    println!(
        "seeded {items} daily roll-ups ({probes} probes, {rules} rules x {days} days, a probe every {interval} min) in {:.1} s; {:.1} KB per roll-up",
        started.elapsed().as_secs_f64(),
        bytes as f64 / items.max(1) as f64 / 1024.0
    );
    let last_month = Period::last_month(Utc::now()).unwrap_or_else(|| unreachable!());
    let whole = Period::days(first, today - Duration::days(1)).unwrap_or_else(|| unreachable!());
    println!("| range | days | roll-ups read | KB read | probe records a per-probe report reads | roll-up query time | report time |");
    println!("|---|---|---|---|---|---|---|");
    for (name, period) in [("last month", last_month), ("whole range", whole)] {
        let span_days = (period.to - period.from).num_days();
        let read_started = Instant::now();
        let read_rollups = ledger
            .daily_rollups(&source, period.first_day(), period.last_day())
            .await?;
        let read_ms = read_started.elapsed().as_secs_f64() * 1000.0;
        let read_bytes: usize = read_rollups
            .iter()
            .map(|r| serde_json::to_vec(r).map(|v| v.len()).unwrap_or(0))
            .sum();
        let options = ReportOptions {
            period,
            buckets: vec![source.clone()],
            canary_segment: None,
        };
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let built = report(&ledger, &options, Utc::now()).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            std::hint::black_box(built);
        }
        times.sort_by(f64::total_cmp);
        let per_probe = span_days as u64 * rules * (24 * 60 / interval as u64);
        println!(
            "| {name} | {span_days} | {} | {:.0} | {per_probe} | {read_ms:.0} ms | {:.0} ms (median of 5) |",
            read_rollups.len(),
            read_bytes as f64 / 1024.0,
            times[2]
        );
    }
    drop(moto);
    Ok(())
}
