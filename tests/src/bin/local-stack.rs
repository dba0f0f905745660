//! `local-stack`: provision the local AWS stack and show what the monitor wrote, for the demo and
//! for people poking at the functions by hand.
//!
//!     local-stack provision --endpoint http://127.0.0.1:PORT --env-file .local/functions.env
//!     local-stack pages     --endpoint http://127.0.0.1:PORT
//!     local-stack ledger    --endpoint http://127.0.0.1:PORT
//!     local-stack latency   --endpoint http://127.0.0.1:PORT   (demo datapoints for the latency alarm)

use anyhow::{bail, Context, Result};
use replmon_tests::{render_page, sdk_config, Stack, StackNames};
use std::collections::BTreeMap;

fn usage() -> &'static str {
    "usage: local-stack (provision --endpoint URL [--env-file PATH] | pages | ledger | latency) --endpoint URL"
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("");
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(endpoint) = option("--endpoint") else {
        bail!("{}", usage());
    };
    let sdk = sdk_config(&endpoint).await;
    match command {
        "provision" => {
            let stack = Stack::provision(&sdk, StackNames::default()).await?;
            let env: Vec<String> = stack
                .function_env(&endpoint)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if let Some(path) = option("--env-file") {
                if let Some(dir) = std::path::Path::new(&path).parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, env.join("\n") + "\n")
                    .with_context(|| format!("writing {path}"))?;
            }
            println!("provisioned on {endpoint}:");
            println!("  table   {}", stack.names.table);
            println!("  topic   {} (pages)", stack.topic_arn);
            println!(
                "  queue   {} (subscribed to the topic: pages land here)",
                stack.names.inbox_queue
            );
            println!(
                "  buckets {} -> {} (versioned, rule {})",
                stack.names.source_bucket, stack.names.replica_bucket, stack.names.rule_id
            );
        }
        "pages" => {
            let stack = Stack::attach(&sdk, StackNames::default()).await?;
            let pages = stack.drain_pages().await?;
            if pages.is_empty() {
                println!("(no pages)");
            }
            for (i, page) in pages.iter().enumerate() {
                println!(
                    "==================== message {} of {} ====================",
                    i + 1,
                    pages.len()
                );
                println!("{}\n", render_page(page));
            }
        }
        "latency" => {
            // Datapoints for the demo's latency alarm: rising over the last 30 minutes.
            use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
            use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
            let names = StackNames::default();
            let now = chrono::Utc::now().timestamp();
            let dimension =
                |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
            let data: Vec<MetricDatum> = (0..30)
                .map(|i| {
                    MetricDatum::builder()
                        .metric_name("ReplicationLatency")
                        // Name order: moto matches dimensions by list order.
                        .dimensions(dimension("DestinationBucket", &names.replica_bucket))
                        .dimensions(dimension("RuleId", &names.rule_id))
                        .dimensions(dimension("SourceBucket", &names.source_bucket))
                        .timestamp(AwsDateTime::from_secs(now - 60 * (30 - i)))
                        .value((20 + i * i * 2) as f64)
                        .unit(StandardUnit::Seconds)
                        .build()
                })
                .collect();
            aws_sdk_cloudwatch::Client::new(&sdk)
                .put_metric_data()
                .namespace("AWS/S3")
                .set_metric_data(Some(data))
                .send()
                .await?;
            println!(
                "put 30 ReplicationLatency datapoints for {} -> {}",
                names.source_bucket, names.replica_bucket
            );
        }
        "ledger" => {
            let stack = Stack::attach(&sdk, StackNames::default()).await?;
            let items = stack.ledger_items().await?;
            print_ledger(&items);
        }
        _ => bail!("{}", usage()),
    }
    Ok(())
}

fn print_ledger(items: &[BTreeMap<String, String>]) {
    let field = |item: &BTreeMap<String, String>, name: &str| {
        item.get(name).cloned().unwrap_or_else(|| "-".into())
    };
    let of = |entity: &'static str| {
        items
            .iter()
            .filter(move |i| i.get("entity").map(String::as_str) == Some(entity))
    };
    println!("INCIDENTS");
    println!(
        "  {:<22} {:<22} {:<22} {:<28} {:<9} {:>5}  FIRST SEEN .. LAST SEEN",
        "SOURCE", "DESTINATION", "RULE", "CAUSE", "SEVERITY", "PAGES"
    );
    for item in of("incident") {
        println!(
            "  {:<22} {:<22} {:<22} {:<28} {:<9} {:>5}  {} .. {}",
            field(item, "source_bucket"),
            field(item, "destination_bucket"),
            field(item, "rule_id"),
            field(item, "cause"),
            field(item, "severity"),
            field(item, "pages_sent"),
            field(item, "first_seen"),
            field(item, "last_seen")
        );
    }
    println!("\nFAILED AND LATE OBJECTS");
    println!(
        "  {:<16} {:<22} {:<40} {:<34} {:<26}",
        "STATUS", "DESTINATION", "KEY", "VERSION", "REASON"
    );
    for item in of("object") {
        println!(
            "  {:<16} {:<22} {:<40} {:<34} {:<26}",
            field(item, "status"),
            field(item, "destination_bucket"),
            field(item, "key"),
            field(item, "version_id"),
            field(item, "failure_reason")
        );
    }
    println!("\nALARMS");
    println!(
        "  {:<45} {:<18} {:<26} INCIDENT OPEN SINCE",
        "ALARM", "STATE", "STATE SINCE"
    );
    for item in of("alarm") {
        println!(
            "  {:<45} {:<18} {:<26} {}",
            field(item, "alarm_name"),
            field(item, "state"),
            field(item, "state_time"),
            field(item, "incident_opened_at")
        );
    }
    let members = of("member").count();
    println!(
        "\n{} items in all ({members} event memberships)",
        items.len()
    );
}
