//! `replmon`: what is broken, and what the replica is missing, read from the monitor's ledger.
//!
//!     replmon status  [--json] [--window 24h] [--bucket B]...
//!     replmon backlog --bucket B [--destination D] [--limit 100] [--after TOKEN | --all] [--json]
//!     replmon redrive --bucket B [--destination D] [--dry-run] [--yes] [--force]
//!     replmon report  [--month YYYY-MM | --from DAY --to DAY] [--bucket B]... [--format html|md|json] [--out FILE]
//!     replmon migrate   (once, after upgrading from a release before the one-write ledger)
//!
//! The table comes from `--table` or `REPLMON_TABLE`; region and credentials from the usual AWS
//! chain; `AWS_ENDPOINT_URL` points it at the local stack.

use anyhow::{anyhow, bail, Result};
use aws_sdk_dynamodb::config::ProvideCredentials;
use clap::{Parser, Subcommand};
use replmon_shared::aws::{sdk_config, DynamoDbLedger, Migration};
use replmon_shared::canary::setup::CanarySegment;
use replmon_shared::config::{AwsSettings, ProcessEnvironment};
use replmon_shared::ledger::{LedgerError, ObjectRecord};
use replmon_shared::status::{
    backlog_text, status, without_probes, BacklogCursor, BacklogPage, LedgerReader, StatusOptions,
};
use std::process::ExitCode;

#[path = "replmon/redrive.rs"]
mod redrive;
#[path = "replmon/report.rs"]
mod report;

#[derive(Parser)]
#[command(
    name = "replmon",
    version,
    about = "What is broken in S3 replication, and which objects the replica lacks, from the replication monitor's ledger."
)]
struct Cli {
    /// The ledger table: the LedgerTable output of the monitor's stack.
    #[arg(long, env = "REPLMON_TABLE", global = true)]
    table: Option<String>,
    /// The canary's key segment (its REPLMON_CANARY_PREFIX): its probes are left out of the backlog.
    #[arg(long, env = "REPLMON_CANARY_PREFIX", default_value = "replmon-canary/", global = true, value_parser = CanarySegment::new)]
    canary_prefix: CanarySegment,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open incidents, the unreplicated backlog, canary latency, failures by reason and
    /// configuration findings.
    Status {
        /// One JSON document instead of tables.
        #[arg(long)]
        json: bool,
        /// The window for canary figures and failures by reason: 90m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_window)]
        window: chrono::Duration,
        /// Only this source bucket (repeat for more); alarms are then left out.
        #[arg(long = "bucket")]
        buckets: Vec<String>,
    },
    /// The failed or late object versions a replica lacks, page by page.
    Backlog {
        /// The source bucket.
        #[arg(long)]
        bucket: String,
        /// Only this destination bucket.
        #[arg(long)]
        destination: Option<String>,
        /// Objects per page.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Continue after this token (printed at the end of the previous page).
        #[arg(long, value_parser = parse_cursor)]
        after: Option<BacklogCursor>,
        /// Every page at once.
        #[arg(long, conflicts_with = "after")]
        all: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Get the replica its missing objects back: one S3 Batch Replication job for the source's
    /// FAILED object versions, started only when the canary shows the cause cleared (or with
    /// --force). Needs REPLMON_REDRIVE_ROLE_ARN and REPLMON_REDRIVE_REPORT_BUCKET.
    Redrive {
        /// The source bucket.
        #[arg(long)]
        bucket: String,
        /// Only the incidents of this destination (the job itself re-drives every FAILED
        /// version of the source).
        #[arg(long)]
        destination: Option<String>,
        /// Print the plan (scope, versions, the job request, cost, caveats) and stop.
        #[arg(long)]
        dry_run: bool,
        /// Start without asking.
        #[arg(long)]
        yes: bool,
        /// Start even though the canary has not shown the cause cleared.
        #[arg(long)]
        force: bool,
    },
    /// The period's replication evidence per source, rule and destination, for an auditor or
    /// an on-call lead: canary latency against the 15-minute target, failed and late versions,
    /// incidents, exposure, re-drives and audit findings, with a verdict per rule.
    Report(report::Request),
    /// List every source bucket and alarm of the table in its catalog (once, for a ledger
    /// written before the catalog existed; scans the table and needs dynamodb:Scan and PutItem).
    CatalogRebuild,
    /// Convert a ledger written by a release before the one-write ledger (counters on each
    /// incident, memberships in the object records). Idempotent and resumable: run it right
    /// after deploying; until it has run, events of old incidents are retried, not counted.
    Migrate,
}

fn parse_window(text: &str) -> Result<chrono::Duration, String> {
    let unit_at = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(unit_at);
    let value: i64 = number
        .parse()
        .ok()
        .filter(|v| *v > 0 && *v <= 3650 * 24 * 60)
        .ok_or_else(|| {
            format!("{text:?}: expected a positive number and a unit, like 90m, 24h or 7d")
        })?;
    match unit {
        "m" => Ok(chrono::Duration::minutes(value)),
        "h" => Ok(chrono::Duration::hours(value)),
        "d" => Ok(chrono::Duration::days(value)),
        _ => Err(format!(
            "{text:?}: the unit must be m, h or d (90m, 24h, 7d)"
        )),
    }
}

fn parse_cursor(text: &str) -> Result<BacklogCursor, String> {
    BacklogCursor::decode(text)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("replmon: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let Some(table) = cli.table.filter(|t| !t.trim().is_empty()) else {
        bail!("which ledger table? Pass --table or set REPLMON_TABLE (the LedgerTable output of the monitor's stack)");
    };
    let settings = AwsSettings::from_env(&ProcessEnvironment)?;
    let sdk = sdk_config(&settings, "replmon-cli").await;
    let Some(region) = sdk.region().map(ToString::to_string) else {
        bail!("no AWS region: set AWS_REGION (or a region in your AWS profile)");
    };
    // Resolve credentials first: an SDK call without them fails with a long, unclear chain.
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| anyhow!("no AWS credentials provider is configured"))?;
    provider.provide_credentials().await.map_err(|e| {
        anyhow!(
            "no AWS credentials ({}; tried the environment, the profile, web identity, the container and instance metadata). Set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`",
            e
        )
    })?;
    let ledger = DynamoDbLedger::new(&sdk, &table);
    let explain = |error: LedgerError| {
        match error {
        LedgerError::MissingTable { .. } => anyhow!(
            "table {table:?} does not exist in {region}: check --table (or REPLMON_TABLE) and AWS_REGION"
        ),
        other => anyhow!(other),
    }
    };
    match cli.command {
        Command::Status {
            json,
            window,
            buckets,
        } => {
            let options = StatusOptions {
                window,
                buckets,
                canary_segment: Some(cli.canary_prefix),
            };
            let report = status(&ledger, chrono::Utc::now(), &options)
                .await
                .map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        Command::Backlog {
            bucket,
            destination,
            limit,
            after,
            all,
            json,
        } => {
            let page = if all {
                every_page(&ledger, &bucket, destination.as_deref(), limit as usize).await
            } else {
                ledger
                    .backlog_page(
                        &bucket,
                        destination.as_deref(),
                        after.as_ref(),
                        limit as usize,
                    )
                    .await
            }
            .map_err(explain)?;
            let page = without_probes(page, Some(&cli.canary_prefix));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&backlog_json(&bucket, &page))?
                );
            } else {
                print_backlog(&bucket, destination.as_deref(), limit, &page);
            }
        }
        Command::Redrive {
            bucket,
            destination,
            dry_run,
            yes,
            force,
        } => {
            redrive::redrive(
                &sdk,
                ledger,
                redrive::Request {
                    bucket,
                    destination,
                    dry_run,
                    yes,
                    force,
                },
            )
            .await?;
        }
        Command::Report(request) => {
            report::run(&ledger, cli.canary_prefix, request)
                .await
                .map_err(|e| match e.downcast::<LedgerError>() {
                    Ok(error) => explain(error),
                    Err(other) => other,
                })?;
        }
        Command::CatalogRebuild => {
            let listed = ledger.rebuild_catalog().await.map_err(explain)?;
            println!(
                "catalog of {table}: {} source buckets ({}), {} alarms",
                listed.source_buckets.len(),
                listed.source_buckets.join(", "),
                listed.alarms.len()
            );
        }
        Command::Migrate => {
            let done = Migration { ledger: &ledger }.run().await.map_err(explain)?;
            println!(
                "migrated {table}: {} source buckets, {} incidents converted, {} already current, {} memberships ({} of expired objects)",
                done.source_buckets,
                done.incidents_migrated,
                done.incidents_already_current,
                done.memberships,
                done.memberships_without_object
            );
        }
    }
    Ok(())
}

async fn every_page(
    ledger: &DynamoDbLedger,
    bucket: &str,
    destination: Option<&str>,
    limit: usize,
) -> Result<BacklogPage, LedgerError> {
    let mut all = BacklogPage::default();
    let mut after: Option<BacklogCursor> = None;
    loop {
        let page = ledger
            .backlog_page(bucket, destination, after.as_ref(), limit)
            .await?;
        all.objects.extend(page.objects);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

fn backlog_json(bucket: &str, page: &BacklogPage) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = page.objects.iter().map(object_json).collect();
    serde_json::json!({
        "source_bucket": bucket,
        "objects": objects,
        "next": page.next.as_ref().map(BacklogCursor::encode),
    })
}

fn object_json(object: &ObjectRecord) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("status".into(), object.status().as_str().into());
    }
    value
}

fn print_backlog(bucket: &str, destination: Option<&str>, limit: u32, page: &BacklogPage) {
    let target = destination.map_or_else(|| "its replicas".to_owned(), |d| d.to_owned());
    println!(
        "Object versions in {bucket} that {target} lack ({} on this page):",
        page.objects.len()
    );
    if page.objects.is_empty() && page.next.is_some() {
        println!("  (only canary probes on this page)");
    } else {
        print!("{}", backlog_text(page, chrono::Utc::now()));
    }
    match &page.next {
        Some(next) => {
            let destination = destination
                .map(|d| format!(" --destination {d}"))
                .unwrap_or_default();
            println!(
                "more: replmon backlog --bucket {bucket}{destination} --limit {limit} --after {}",
                next.encode()
            );
        }
        None if !page.objects.is_empty() => println!("(end of the backlog)"),
        None => {}
    }
}
