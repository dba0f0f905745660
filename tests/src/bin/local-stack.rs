//! `local-stack`: provision the local AWS stack and show what the monitor wrote, for the demo and
//! for people poking at the functions by hand.
//!
//!     local-stack provision --endpoint http://127.0.0.1:PORT --env-file .local/functions.env
//!     local-stack pages     --endpoint http://127.0.0.1:PORT
//!     local-stack ledger    --endpoint http://127.0.0.1:PORT
//!     local-stack latency   --endpoint http://127.0.0.1:PORT   (demo datapoints for the latency alarm)
//!     local-stack replicate --endpoint http://127.0.0.1:PORT [--delay-ms 1500]
//!                           [--fail-key-containing TEXT --reason CODE --lambda-port PORT]
//!         (the replication simulator, until stopped: moto does not replicate)

use anyhow::{bail, Context, Result};
use replmon_tests::{render_page, sdk_config, Stack, StackNames};
use std::collections::BTreeMap;

fn usage() -> &'static str {
    "usage: local-stack (provision [--env-file PATH] | pages | ledger | latency | replicate [--delay-ms MS] [--fail-key-containing TEXT --reason CODE --lambda-port PORT]) --endpoint URL"
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
        "replicate" => {
            use replmon_tests::replication_sim::{
                Delay, LambdaInvokeSink, ReplicationSimulator, SimulatorSettings,
            };
            let delay_ms: u64 = option("--delay-ms")
                .map(|v| v.parse())
                .transpose()
                .context("--delay-ms expects milliseconds")?
                .unwrap_or(1500);
            let names = StackNames::default();
            let mut settings = SimulatorSettings {
                delay: Delay::Fixed(std::time::Duration::from_millis(delay_ms)),
                ..Default::default()
            };
            if let Some(port) = option("--lambda-port") {
                settings.failure_sink = Some(std::sync::Arc::new(LambdaInvokeSink {
                    port: port.parse().context("--lambda-port expects a port")?,
                    function: "replication-events".into(),
                }));
            }
            let sim = ReplicationSimulator::start(
                replmon_tests::s3_client(&sdk),
                vec![names.source_bucket.clone()],
                settings,
            )
            .await;
            if let Some(text) = option("--fail-key-containing") {
                let reason =
                    option("--reason").unwrap_or_else(|| "DstPutObjectNotPermitted".into());
                sim.fail_matching(&names.source_bucket, &text, &reason);
            }
            println!(
                "replicating {} -> {} after {delay_ms} ms (stop with SIGTERM)",
                names.source_bucket, names.replica_bucket
            );
            tokio::signal::ctrl_c().await.ok();
            sim.stop().await;
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
    println!("\nCANARY PROBES");
    println!(
        "  {:<13} {:<22} {:<22} {:>10} {:>13}  {:<22} PROBE KEY",
        "STATUS", "DESTINATION", "RULE", "LATENCY", "UNCERTAINTY", "PUT AT"
    );
    for item in of("probe") {
        let ms = |name: &str| {
            item.get(name)
                .map(|v| format!("{v} ms"))
                .unwrap_or_else(|| "-".into())
        };
        let uncertainty = match (item.get("latency_min_ms"), item.get("latency_max_ms")) {
            (Some(lo), Some(hi)) => match (lo.parse::<i64>(), hi.parse::<i64>()) {
                (Ok(lo), Ok(hi)) => format!("{} ms", hi - lo),
                _ => "-".into(),
            },
            _ => "-".into(),
        };
        println!(
            "  {:<13} {:<22} {:<22} {:>10} {:>13}  {:<22} {}",
            field(item, "status"),
            field(item, "destination_bucket"),
            field(item, "rule_id"),
            ms("latency_ms"),
            uncertainty,
            field(item, "put_at").chars().take(22).collect::<String>(),
            field(item, "key")
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
